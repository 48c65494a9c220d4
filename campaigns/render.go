package campaigns

import (
	"bytes"
	"errors"
	"fmt"
	htmlescape "html"
	htmltemplate "html/template"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

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

// Mailing is a campaign's content compiled for sending. Per language, the layout is rendered once around
// placeholders, and the body (its Markdown converted once, template actions kept) is a template of its own: a
// recipient's message costs one execution of the body's HTML and text templates and a few string joins.
type Mailing struct {
	html    map[string]*htmltemplate.Template // body, HTML
	text    map[string]*template.Template     // body, text
	subject map[string]*template.Template
	frame   map[string][2]layoutFrame // language of the footer -> HTML and text frames
	size    map[string]int            // length of the body's source, to size a message
	// An event's block under the body, by language of the footer, and its calendar file; nil without an event.
	eventHTML, eventText map[string]string
	ics                  []byte
	eventSeq             int // the event's sequence number when the mailing was compiled
	lines                qpCache
}

// layoutFrame is a layout rendered with placeholders, cut where the subject, the body and the unsubscribe link go.
type layoutFrame struct {
	parts []string // static text between the placeholders
	slots []string // which placeholder follows each part but the last
}

const (
	slotSubject = "CSRDESKSLOTSUBJECT"
	slotBody    = "CSRDESKSLOTBODY"
	slotUnsub   = "CSRDESKSLOTUNSUB"
)

var slotPattern = regexp.MustCompile(slotSubject + "|" + slotBody + "|" + slotUnsub)

func newFrame(rendered string) layoutFrame {
	var f layoutFrame
	last := 0
	for _, loc := range slotPattern.FindAllStringIndex(rendered, -1) {
		f.parts = append(f.parts, rendered[last:loc[0]])
		f.slots = append(f.slots, rendered[loc[0]:loc[1]])
		last = loc[1]
	}
	f.parts = append(f.parts, rendered[last:])
	return f
}

// fill writes the frame into b, calling slot where each placeholder goes.
func (f layoutFrame) fill(b *strings.Builder, slot func(string) error) error {
	for i, p := range f.parts {
		b.WriteString(p)
		if i < len(f.slots) {
			if err := slot(f.slots[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// size is the length of the frame's static text.
func (f layoutFrame) size() int {
	n := 0
	for _, p := range f.parts {
		n += len(p)
	}
	return n
}

// Rendered is one recipient's message.
type Rendered struct {
	Subject, HTML, Text string
	ICS                 []byte // the campaign's event as an iCalendar file (shared: do not modify), or nil
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
	m := &Mailing{html: map[string]*htmltemplate.Template{}, text: map[string]*template.Template{}, subject: map[string]*template.Template{},
		frame: map[string][2]layoutFrame{}, size: map[string]int{}}
	if _, ok := c.Body[""]; !ok {
		return nil, fmt.Errorf("campaign: %w: no body", ErrInvalid)
	}
	if _, ok := c.Subject[""]; !ok { // the subject of a language without its own
		return nil, fmt.Errorf("campaign: %w: no subject", ErrInvalid)
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
	// The layout around placeholders, once per footer language.
	for _, lang := range templates.Langs {
		data := map[string]any{"Lang": lang, "Subject": slotSubject, "UnsubscribeURL": slotUnsub, "Footer": layout.Footer(lang)}
		var html, text bytes.Buffer
		h := htmltemplate.Must(layout.HTML.Clone())
		htmltemplate.Must(h.New("body").Parse(slotBody))
		if err := h.Execute(&html, data); err != nil {
			return nil, fmt.Errorf("mail layout: %w", err)
		}
		t := template.Must(layout.Text.Clone())
		template.Must(t.New("body").Parse(slotBody))
		if err := t.Execute(&text, data); err != nil {
			return nil, fmt.Errorf("mail layout: %w", err)
		}
		m.frame[lang] = [2]layoutFrame{newFrame(html.String()), newFrame(text.String())}
	}
	md := goldmark.New()
	for lang, src := range c.Body {
		src = strings.TrimSpace(src) // as the text part has it
		m.size[lang] = len(src)
		text, err := template.New(where(lang)).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w: %v", ErrInvalid, err)
		}
		m.text[lang] = text
		body, err := markdownKeepingActions(md, src)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w: %s: %v", ErrInvalid, where(lang), err)
		}
		html, err := htmltemplate.New(where(lang)).Option("missingkey=zero").Parse(body)
		if err != nil {
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
	frame := m.frame[footerLang(sub.Language)]
	data := mailData{Subscriber: sub, UnsubscribeURL: unsubscribeURL}
	var subject strings.Builder
	if err := subj.Execute(&capped{b: &subject, left: maxSubject}, data); err != nil {
		return Rendered{}, err
	}
	r := Rendered{Subject: strings.TrimSpace(subject.String())}
	// The body templates write straight into the message, which is sized for the frame and the body's source.
	var html, text strings.Builder
	html.Grow(frame[0].size() + 2*m.size[lang] + len(unsubscribeURL))
	err := frame[0].fill(&html, func(slot string) error {
		switch slot {
		case slotSubject:
			html.WriteString(htmlescape.EscapeString(r.Subject))
		case slotBody:
			if err := m.html[lang].Execute(&capped{b: &html, left: maxPart}, data); err != nil {
				return err
			}
			html.WriteString(m.eventHTML[footerLang(sub.Language)])
		case slotUnsub:
			html.WriteString(htmlescape.EscapeString(unsubscribeURL))
		}
		return nil
	})
	if err != nil {
		return Rendered{}, err
	}
	text.Grow(frame[1].size() + m.size[lang] + len(unsubscribeURL))
	err = frame[1].fill(&text, func(slot string) error {
		switch slot {
		case slotSubject:
			text.WriteString(r.Subject)
		case slotBody:
			if err := m.text[lang].Execute(&capped{b: &text, left: maxPart}, data); err != nil {
				return err
			}
			text.WriteString(m.eventText[footerLang(sub.Language)])
		case slotUnsub:
			text.WriteString(unsubscribeURL)
		}
		return nil
	})
	if err != nil {
		return Rendered{}, err
	}
	r.HTML, r.Text, r.ICS = html.String(), text.String(), m.ics
	return r, nil
}

// The most a rendered subject and body part may hold: far above any real mailing, they stop a template that
// loops ({{range 100000000}}x{{end}}) before it takes a worker's memory, and Compile's trial render reports it.
const (
	maxSubject = 1000
	maxPart    = 2 << 20
)

// capped writes to b until left runs out, then fails, which ends a template's execution.
type capped struct {
	b    *strings.Builder
	left int
}

func (c *capped) Write(p []byte) (int, error) {
	if len(p) > c.left {
		return 0, errors.New("the rendered text is too long (a loop in the template?)")
	}
	c.left -= len(p)
	return c.b.Write(p)
}

// footerLang is the language a subscriber's layout, footer and event block are in: theirs, or English.
func footerLang(lang string) string {
	if slices.Contains(templates.Langs, lang) {
		return lang
	}
	return "en"
}

// eventView is what an event's block in a mailing shows, in one language.
type eventView struct {
	Title, When, Place, URL, Google, Outlook, ICS string
	L                                             map[string]string // labels
}

var eventHTML = htmltemplate.Must(htmltemplate.New("event").Parse(`
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="margin-top:20px;"><tr>
<td style="padding:14px 18px;background:#f3f5f8;border-left:4px solid #0b5cad;border-radius:4px;font-size:15px;line-height:1.6;">
<strong>{{.Title}}</strong><br>
{{.L.event_when}}: {{.When}}<br>
{{if .Place}}{{.L.event_where}}: {{.Place}}<br>{{end}}
{{if .URL}}{{.L.event_online}}: <a href="{{.URL}}">{{.URL}}</a><br>{{end}}
{{.L.event_add}}: <a href="{{.Google}}">Google</a> · <a href="{{.Outlook}}">Outlook</a> · <a href="{{.ICS}}">{{.L.event_ics}}</a>
</td></tr></table>`))

var eventText = template.Must(template.New("event").Parse(`

{{.Title}}
{{.L.event_when}}: {{.When}}
{{if .Place}}{{.L.event_where}}: {{.Place}}
{{end}}{{if .URL}}{{.L.event_online}}: {{.URL}}
{{end}}{{.L.event_add}}: {{.ICS}}`))

// pageTexts are the texts of the public pages and the event block, loaded once: they are embedded and fixed.
var pageTexts = sync.OnceValues(templates.Pages)

// SetEvent puts an event under the body of every message, in the subscriber's language, and its calendar file
// in every message as an attachment. Links point to the public pages at publicURL.
func (m *Mailing) SetEvent(ev *Event, publicURL string, now time.Time) error {
	texts, err := pageTexts()
	if err != nil {
		return err
	}
	publicURL = strings.TrimRight(publicURL, "/")
	m.eventSeq = ev.Sequence
	if m.ics, err = ev.ICS(EventDomain(publicURL), now); err != nil {
		return err
	}
	icsURL := publicURL + "/events/" + ev.ID + ".ics"
	links := ev.CalendarLinks(icsURL)
	m.eventHTML, m.eventText = map[string]string{}, map[string]string{}
	for _, lang := range templates.Langs {
		v := eventView{Title: ev.Title, When: ev.When(lang), Place: ev.Place, URL: ev.URL, Google: links.Google, Outlook: links.Outlook, ICS: icsURL,
			L: map[string]string{}}
		for _, k := range []string{"event_when", "event_where", "event_online", "event_add", "event_ics"} {
			v.L[k] = texts.Text(lang, k, nil)
		}
		var h, t strings.Builder
		if err := eventHTML.Execute(&h, v); err != nil {
			return err
		}
		if err := eventText.Execute(&t, v); err != nil {
			return err
		}
		m.eventHTML[lang], m.eventText[lang] = h.String(), t.String()
	}
	return nil
}
