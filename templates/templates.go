// Package templates holds csrdesk's texts: what the bot says in each language, the layout and footer of the
// mailings, and the public subscriber pages.
// They are embedded in the binary and checked when loaded, so a broken text fails at start-up, not mid-chat.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"sort"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

//go:embed bot.yaml pages.yaml mail pages
var files embed.FS

// Langs are the languages every text must exist in.
var Langs = []string{"en", "de", "it", "fr", "es"}

// Texts are the bot's messages: key -> language -> template.
type Texts struct {
	t map[string]map[string]*template.Template
}

// Bot loads the bot's texts, reporting every key that lacks a language or does not parse.
func Bot() (*Texts, error) {
	data, err := files.ReadFile("bot.yaml")
	if err != nil {
		return nil, err
	}
	return parse("bot.yaml", data)
}

// Pages loads the texts of the public subscriber pages and the subscription mails.
func Pages() (*Texts, error) {
	data, err := files.ReadFile("pages.yaml")
	if err != nil {
		return nil, err
	}
	return parse("pages.yaml", data)
}

// PublicPage is the HTML of the public subscriber pages: one template, the page to show chosen by its data.
func PublicPage() (*htmltemplate.Template, error) {
	return htmltemplate.ParseFS(files, "pages/public.html")
}

func parse(name string, data []byte) (*Texts, error) {
	var raw map[string]map[string]string
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ts := &Texts{t: map[string]map[string]*template.Template{}}
	var errs []string
	for key, byLang := range raw {
		ts.t[key] = map[string]*template.Template{}
		for _, lang := range Langs {
			src, ok := byLang[lang]
			if !ok || strings.TrimSpace(src) == "" {
				errs = append(errs, fmt.Sprintf("%s: %s has no %s text", name, key, lang))
				continue
			}
			tpl, err := template.New(key + "." + lang).Option("missingkey=error").Parse(src)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %s.%s: %v", name, key, lang, err))
				continue
			}
			ts.t[key][lang] = tpl
		}
		for lang := range byLang {
			if !contains(Langs, lang) {
				errs = append(errs, fmt.Sprintf("%s: %s has text in unknown language %q", name, key, lang))
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return ts, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Keys returns every text's key.
func (ts *Texts) Keys() []string {
	keys := make([]string, 0, len(ts.t))
	for k := range ts.t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Text renders the text key in lang (English when lang is unknown) with data. A key that does not exist is a
// programming error; it renders as the key itself so that a chat never shows nothing.
func (ts *Texts) Text(lang, key string, data any) string {
	byLang, ok := ts.t[key]
	if !ok {
		return key
	}
	tpl, ok := byLang[lang]
	if !ok {
		tpl = byLang["en"]
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, data); err != nil {
		return key
	}
	return b.String()
}

// Mail is the layout every mailing is set in: an HTML and a plain-text part, each calling a template "body" that
// the campaign defines, and the footer texts by language.
type Mail struct {
	HTML   *htmltemplate.Template
	Text   *template.Template
	footer map[string]map[string]string // key -> language -> text
}

// Footer holds a mailing's footer texts in one language.
type Footer struct{ Platform, Why, Unsubscribe string }

// Footer returns the footer in lang, English for languages it lacks.
func (m *Mail) Footer(lang string) Footer {
	get := func(key string) string {
		if t := m.footer[key][lang]; t != "" {
			return t
		}
		return m.footer[key]["en"]
	}
	return Footer{Platform: get("platform"), Why: get("why"), Unsubscribe: get("unsubscribe")}
}

// MailLayout loads the mail layout.
func MailLayout() (*Mail, error) {
	h, err := htmltemplate.ParseFS(files, "mail/layout.html")
	if err != nil {
		return nil, err
	}
	t, err := template.ParseFS(files, "mail/layout.txt")
	if err != nil {
		return nil, err
	}
	data, err := files.ReadFile("mail/footer.yaml")
	if err != nil {
		return nil, err
	}
	m := &Mail{HTML: h.Option("missingkey=error"), Text: t.Option("missingkey=error")}
	if err := yaml.Unmarshal(data, &m.footer); err != nil {
		return nil, fmt.Errorf("mail/footer.yaml: %w", err)
	}
	for key, byLang := range m.footer {
		for _, l := range Langs {
			if byLang[l] == "" {
				return nil, fmt.Errorf("mail/footer.yaml: %s has no %s text", key, l)
			}
		}
	}
	return m, nil
}
