package campaigns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	c := Content{Subject: map[string]string{"": "News for {{.Subscriber.Company}}"},
		Body: map[string]string{"": "Dear {{.Subscriber.Name}} in {{index .Subscriber.Attrs \"city\"}},\n\n- **bold** item\n- [link](https://example.com/?a=1&b=2)\n\n{{if .Subscriber.Attrs.vip}}VIP{{end}}"}}
	m, err := Compile(c, mustLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	sub := &Subscriber{Email: "x@example.com", Name: `<b>Bo</b> & "Co"`, Company: "Acme", Language: "fr", Attrs: map[string]string{"city": "Lyon"}}
	r, err := m.Render(sub, "https://p.example/unsubscribe/tok")
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "News for Acme" {
		t.Errorf("subject %q", r.Subject)
	}
	for _, want := range []string{"Dear &lt;b&gt;Bo&lt;/b&gt; &amp; &#34;Co&#34; in Lyon,", "<strong>bold</strong>", `href="https://example.com/?a=1&amp;b=2"`,
		`href="https://p.example/unsubscribe/tok"`, "Se désabonner", `<html lang="fr">`} {
		if !strings.Contains(r.HTML, want) {
			t.Errorf("HTML lacks %q:\n%s", want, r.HTML)
		}
	}
	if strings.Contains(r.HTML, "VIP") || strings.Contains(r.HTML, "<b>Bo") {
		t.Error("a missing attribute rendered, or a name was not escaped")
	}
	if !strings.HasPrefix(r.Text, `Dear <b>Bo</b> & "Co" in Lyon,`) || !strings.Contains(r.Text, "Se désabonner: https://p.example/unsubscribe/tok") {
		t.Errorf("text:\n%s", r.Text)
	}
}

func TestCompileCatchesMistakes(t *testing.T) {
	for body, want := range map[string]string{
		"Hi {{.Subscriber.Nmae}}": "can't evaluate field Nmae",
		"Hi {{.Subscriber.Name":   "unclosed action",
		"Hi {{range}}":            "missing value for range",
	} {
		_, err := Compile(Content{Subject: map[string]string{"": "s"}, Body: map[string]string{"": body}}, mustLayout(t))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q): %v, want %q", body, err, want)
		}
	}
}

func TestLoadContentVariants(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "news.md"), []byte("Hello"), 0o644)
	os.WriteFile(filepath.Join(dir, "news.it.md"), []byte("Subject: Notizie\nCiao"), 0o644)
	c, err := LoadContent(filepath.Join(dir, "news.md"), "News")
	if err != nil {
		t.Fatal(err)
	}
	if c.Body[""] != "Hello" || c.Body["it"] != "Ciao" || c.Subject["it"] != "Notizie" || c.Subject[""] != "News" || len(c.Body) != 2 {
		t.Errorf("content: %+v", c)
	}
	if _, err := LoadContent(filepath.Join(dir, "missing.md"), "x"); err == nil {
		t.Error("a missing body file was accepted")
	}
}

// A template that loops writes until a limit, then fails: at creation, not in every worker.
func TestCompileStopsRunawayTemplates(t *testing.T) {
	for _, c := range []Content{
		{Subject: map[string]string{"": "S"}, Body: map[string]string{"": "{{range 100000000}}xxxxxxxx{{end}}"}},
		{Subject: map[string]string{"": "{{range 100000}}S{{end}}"}, Body: map[string]string{"": "B"}},
	} {
		_, err := Compile(c, mustLayout(t))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "a loop in the template?") {
			t.Errorf("%v: %v", c, err)
		}
	}
}
