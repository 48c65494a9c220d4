package telegram

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestToHTML(t *testing.T) {
	tests := []struct{ md, want string }{
		{"Plain <b>not bold</b> & more", "Plain not bold &amp; more"}, // tags dropped, text kept
		{"a **bold** and *it* and `x<y`", "a <b>bold</b> and <i>it</i> and <code>x&lt;y</code>"},
		{"see [EUR-Lex](https://eur-lex.europa.eu/eli/dir/2026/470/oj?a=1&b=2)", `see <a href="https://eur-lex.europa.eu/eli/dir/2026/470/oj?a=1&amp;b=2">EUR-Lex</a>`},
		{"one\ntwo\n\nthree", "one two\n\nthree"},
		{"- a\n- **b**\n\nafter", "• a\n• <b>b</b>\n\nafter"},
		{"1. x\n2. y", "1. x\n2. y"},
		{"# Title\ntext", "<b>Title</b>\n\ntext"},
		{"<script>alert(1)</script>", ""},
	}
	for _, tt := range tests {
		if got := toHTML(tt.md); got != tt.want {
			t.Errorf("toHTML(%q) = %q, want %q", tt.md, got, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	para := strings.Repeat("word ", 300) // 1500 characters
	md := para + "\n\n" + para + "\n\n" + para + "\n\n" + strings.Repeat("ä", 5000)
	parts := split(md, 4000)
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	total := 0
	for _, p := range parts {
		n := utf8.RuneCountInString(p)
		if n > 4000 || n == 0 {
			t.Errorf("part of %d characters", n)
		}
		total += n
	}
	if !strings.HasSuffix(parts[0], "word") || !strings.HasPrefix(parts[1], "word") {
		t.Errorf("did not cut between paragraphs: %q ... %q", parts[0][len(parts[0])-10:], parts[1][:10])
	}
	if got := split("short", 4000); len(got) != 1 || got[0] != "short" {
		t.Errorf("split(short) = %q", got)
	}
}
