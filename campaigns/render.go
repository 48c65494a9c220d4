package campaigns

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"os"
	"path/filepath"
	"regexp"
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

// Mailing is a campaign's content compiled for sending: per language, the whole HTML message as one
// html/template (the Markdown converted once, its template actions kept) and the text part as one text/template,
// so that a recipient's message costs two template executions, not a Markdown conversion.
type Mailing struct {
	layout  *templates.Mail
	html    map[string]*htmltemplate.Template
	text    map[string]*template.Template
	subject map[string]*template.Template
}

// Rendered is one recipient's message.
type Rendered struct {
	Subject, HTML, Text string
}

// sample is the subscriber a mailing is tried on when it is compiled, so that a mistake in a template shows when
// the campaign is created or tested, not in the middle of sending.
var sample = &Subscriber{Email: "sample@example.com", Name: "Sample Name", Company: "Sample Company", Country: "DE",
	Language: "en", Role: "buyer", Status: Active, Attrs: map[string]string{}}

// action matches a template action in a body, which the Markdown conversion must leave alone.
var action = regexp.MustCompile(`\{\{.*?\}\}`)

// markdownKeepingActions converts Markdown to HTML, passing template actions through untouched.
func markdownKeepingActions(md goldmark.Markdown, src string) (string, error) {
	var actions []string
	protected := action.ReplaceAllStringFunc(src, func(a string) string {
		actions = append(actions, a)
		return fmt.Sprintf("CSRDESKACTION%dX", len(actions)-1)
	})
	var out bytes.Buffer
	if err := md.Convert([]byte(protected), &out); err != nil {
		return "", err
	}
	html := out.String()
	for i, a := range actions {
		html = strings.Replace(html, fmt.Sprintf("CSRDESKACTION%dX", i), a, 1)
	}
	return html, nil
}

// Compile parses and tries every template of the content.
func Compile(c Content, layout *templates.Mail) (*Mailing, error) {
	m := &Mailing{layout: layout, html: map[string]*htmltemplate.Template{}, text: map[string]*template.Template{}, subject: map[string]*template.Template{}}
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
	md := goldmark.New()
	for lang, src := range c.Body {
		if _, err := template.New(where(lang)).Parse(src); err != nil {
			return nil, fmt.Errorf("campaign: %w: %v", ErrInvalid, err) // reported with the file's own name
		}
		// The layout's clone is the template to execute; the body is defined inside it.
		text := template.Must(layout.Text.Clone()).Option("missingkey=zero")
		if _, err := text.New("body").Parse(src); err != nil {
			return nil, fmt.Errorf("campaign: %w: %s: %v", ErrInvalid, where(lang), err)
		}
		m.text[lang] = text
		body, err := markdownKeepingActions(md, src)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w: %s: %v", ErrInvalid, where(lang), err)
		}
		html := htmltemplate.Must(layout.HTML.Clone()).Option("missingkey=zero")
		if _, err := html.New("body").Parse(body); err != nil {
			return nil, fmt.Errorf("campaign: %w: %s: %v", ErrInvalid, where(lang), err)
		}
		m.html[lang] = html
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
			return nil, fmt.Errorf("campaign: %w: %s: %v", ErrInvalid, where(lang), err)
		}
	}
	return m, nil
}

type mailData struct {
	Subscriber     *Subscriber
	UnsubscribeURL string
	Lang           string
	Subject        string
	Footer         templates.Footer
}

// Render builds a subscriber's message in their language (the default body when there is no variant for it).
func (m *Mailing) Render(sub *Subscriber, unsubscribeURL string) (Rendered, error) {
	lang := sub.Language
	if _, ok := m.html[lang]; !ok {
		lang = ""
	}
	subj, ok := m.subject[lang]
	if !ok {
		subj = m.subject[""]
	}
	footerLang := sub.Language
	if footerLang == "" {
		footerLang = "en"
	}
	data := mailData{Subscriber: sub, UnsubscribeURL: unsubscribeURL, Lang: footerLang, Footer: m.layout.Footer(footerLang)}
	var subject, html, text bytes.Buffer
	if err := subj.Execute(&subject, data); err != nil {
		return Rendered{}, err
	}
	data.Subject = strings.TrimSpace(subject.String())
	if err := m.html[lang].Execute(&html, data); err != nil {
		return Rendered{}, err
	}
	if err := m.text[lang].Execute(&text, data); err != nil {
		return Rendered{}, err
	}
	return Rendered{Subject: data.Subject, HTML: html.String(), Text: text.String()}, nil
}
