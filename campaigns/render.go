package campaigns

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/yuin/goldmark"

	"csrdesk/faq"
	"csrdesk/templates"
)

// Content is what a campaign says: a subject and a Markdown body, optionally per language. The body is a Go
// text/template: {{.Subscriber.Name}}, {{.Subscriber.Company}}, {{.Subscriber.Attrs.city}}, {{.UnsubscribeURL}}.
type Content struct {
	Subject  map[string]string `json:"subject"` // language ("" for the default) -> subject
	Body     map[string]string `json:"body"`    // language ("" for the default) -> Markdown
	BodyFile string            `json:"body_file,omitempty"`
}

// LoadContent reads a campaign body from file, and its language variants from the files beside it named
// with the language before the extension (news.md, news.de.md, news.it.md, ...). A variant may start with a
// "Subject: ..." line that replaces the subject in its language.
func LoadContent(file, subject string) (Content, error) {
	c := Content{Subject: map[string]string{"": subject}, Body: map[string]string{}, BodyFile: file}
	if strings.TrimSpace(subject) == "" {
		return c, fmt.Errorf("campaign: %w: the subject is empty", ErrInvalid)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return c, fmt.Errorf("campaign body: %w", err)
	}
	c.Body[""] = string(data)
	ext := filepath.Ext(file)
	for _, lang := range faq.Langs {
		variant := strings.TrimSuffix(file, ext) + "." + string(lang) + ext
		data, err := os.ReadFile(variant)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return c, fmt.Errorf("campaign body: %w", err)
		}
		body := string(data)
		if first, rest, ok := strings.Cut(body, "\n"); ok && strings.HasPrefix(first, "Subject:") {
			c.Subject[string(lang)] = strings.TrimSpace(strings.TrimPrefix(first, "Subject:"))
			body = rest
		}
		c.Body[string(lang)] = body
	}
	return c, nil
}

// Mailing is a campaign's content compiled for sending: every template parsed and tried once.
type Mailing struct {
	layout  *templates.Mail
	md      goldmark.Markdown
	subject map[string]*template.Template
	body    map[string]*template.Template
}

// Rendered is one recipient's message.
type Rendered struct {
	Subject, HTML, Text string
}

// sample is the subscriber a mailing is tried on when it is compiled, so that a mistake in a template shows when
// the campaign is created or tested, not in the middle of sending.
var sample = &Subscriber{Email: "sample@example.com", Name: "Sample Name", Company: "Sample Company", Country: "DE",
	Language: "en", Role: "buyer", Status: Active, Attrs: map[string]string{}}

// Compile parses and tries every template of the content.
func Compile(c Content, layout *templates.Mail) (*Mailing, error) {
	m := &Mailing{layout: layout, md: goldmark.New(), subject: map[string]*template.Template{}, body: map[string]*template.Template{}}
	if _, ok := c.Body[""]; !ok {
		return nil, fmt.Errorf("campaign: %w: no body", ErrInvalid)
	}
	where := func(lang string) string {
		name := c.BodyFile
		if name == "" {
			name = "body"
		}
		if lang != "" {
			ext := filepath.Ext(name)
			name = strings.TrimSuffix(name, ext) + "." + lang + ext
		}
		return name
	}
	for lang, src := range c.Body {
		t, err := template.New(where(lang)).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w: %v", ErrInvalid, err)
		}
		m.body[lang] = t
	}
	for lang, src := range c.Subject {
		t, err := template.New("subject " + lang).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w: subject: %v", ErrInvalid, err)
		}
		m.subject[lang] = t
	}
	for lang := range c.Body {
		s := *sample
		s.Language = lang
		if _, err := m.Render(&s, "https://example.com/unsubscribe"); err != nil {
			return nil, fmt.Errorf("campaign: %w: %v", ErrInvalid, err)
		}
	}
	return m, nil
}

type mailData struct {
	Subscriber     *Subscriber
	UnsubscribeURL string
}

// Render builds a subscriber's message in their language (the default body when there is no variant for it).
func (m *Mailing) Render(sub *Subscriber, unsubscribeURL string) (Rendered, error) {
	lang := sub.Language
	body, ok := m.body[lang]
	if !ok {
		body, lang = m.body[""], ""
	}
	subj, ok := m.subject[lang]
	if !ok {
		subj = m.subject[""]
	}
	data := mailData{Subscriber: sub, UnsubscribeURL: unsubscribeURL}
	var md, subject, html, text bytes.Buffer
	if err := body.Execute(&md, data); err != nil {
		return Rendered{}, err
	}
	if err := subj.Execute(&subject, data); err != nil {
		return Rendered{}, err
	}
	var htmlBody bytes.Buffer
	if err := m.md.Convert(md.Bytes(), &htmlBody); err != nil {
		return Rendered{}, err
	}
	footerLang := sub.Language
	if footerLang == "" {
		footerLang = "en"
	}
	layoutData := map[string]any{"Lang": footerLang, "Subject": subject.String(), "Body": htmltemplate.HTML(htmlBody.String()),
		"UnsubscribeURL": unsubscribeURL, "Footer": m.layout.Footer(footerLang)}
	if err := m.layout.HTML.Execute(&html, layoutData); err != nil {
		return Rendered{}, err
	}
	layoutData["Body"] = strings.TrimSpace(md.String())
	if err := m.layout.Text.Execute(&text, layoutData); err != nil {
		return Rendered{}, err
	}
	return Rendered{Subject: strings.TrimSpace(subject.String()), HTML: html.String(), Text: text.String()}, nil
}
