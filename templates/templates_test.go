package templates

import (
	"strings"
	"testing"
)

func TestBotTexts(t *testing.T) {
	ts, err := Bot()
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"Name": "Ada", "Topic": "EU law", "Ticket": 7, "Hours": "Mon-Fri 09:00-17:00", "Next": "Mon 09:00", "Staff": "Bo", "Text": "hi", "Max": 2000, "Email": "ada@example.eu", "URL": "https://platform.example/subscribe"}
	for _, key := range ts.Keys() {
		for _, lang := range Langs {
			got := ts.Text(lang, key, data)
			if got == "" || got == key {
				t.Errorf("%s.%s renders as %q", key, lang, got)
			}
		}
	}
	if got := ts.Text("de", "escalated", map[string]any{"Ticket": 42}); !strings.Contains(got, "#42") {
		t.Errorf("escalated.de = %q", got)
	}
	if got := ts.Text("pt", "empty", nil); got != "Please type a question." {
		t.Errorf("unknown language falls back to English: %q", got)
	}
}

func TestPageTexts(t *testing.T) {
	ts, err := Pages()
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"Email": "ada@example.eu", "URL": "https://platform.example/confirm/x"}
	for _, key := range ts.Keys() {
		for _, lang := range Langs {
			if got := ts.Text(lang, key, data); got == "" || got == key {
				t.Errorf("%s.%s renders as %q", key, lang, got)
			}
		}
	}
	if _, err := PublicPage(); err != nil {
		t.Fatal(err)
	}
}

func TestParseProblems(t *testing.T) {
	_, err := parse("x.yaml", []byte("a:\n  en: hi\n  de: hallo\nb:\n  en: '{{.X'\n  de: x\n  it: x\n  fr: x\n  es: x\n  pt: x\n"))
	for _, want := range []string{"x.yaml: a has no it text", "x.yaml: b.en:", `x.yaml: b has text in unknown language "pt"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}
