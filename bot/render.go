package bot

import (
	"strconv"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// Markup describes a chat platform's text formatting, for Render. The knowledge base and the bot's texts are
// Markdown; Telegram wants a small HTML subset, Slack its own mrkdwn.
type Markup struct {
	Escape       func(string) string // makes plain text safe
	Bold, Italic [2]string           // opening and closing marks
	Code, Pre    [2]string
	Link         func(url, label string) string // url and label already escaped
}

// Render turns Markdown into a platform's markup. Lists become "•" (or numbered) lines and headings bold lines,
// since chat platforms have neither; raw HTML is dropped, as in the web chat.
func Render(md string, m Markup) string {
	src := []byte(md)
	doc := goldmark.DefaultParser().Parse(text.NewReader(src))
	var walk func(w *strings.Builder, n ast.Node, depth int)
	walk = func(w *strings.Builder, n ast.Node, depth int) {
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			switch c := c.(type) {
			case *ast.Paragraph, *ast.TextBlock:
				walk(w, c, depth)
				if c.NextSibling() != nil {
					if _, inItem := c.Parent().(*ast.ListItem); inItem {
						w.WriteString("\n")
					} else {
						w.WriteString("\n\n")
					}
				}
			case *ast.Heading:
				w.WriteString(m.Bold[0])
				walk(w, c, depth)
				w.WriteString(m.Bold[1] + "\n\n")
			case *ast.List:
				for i, item := 0, c.FirstChild(); item != nil; i, item = i+1, item.NextSibling() {
					w.WriteString(strings.Repeat("  ", depth))
					if c.IsOrdered() {
						w.WriteString(strconv.Itoa(c.Start+i) + ". ")
					} else {
						w.WriteString("• ")
					}
					walk(w, item, depth+1)
					w.WriteString("\n")
				}
				if c.NextSibling() != nil {
					w.WriteString("\n")
				}
			case *ast.Emphasis:
				marks := m.Italic
				if c.Level >= 2 {
					marks = m.Bold
				}
				w.WriteString(marks[0])
				walk(w, c, depth)
				w.WriteString(marks[1])
			case *ast.Link:
				var label strings.Builder
				walk(&label, c, depth)
				w.WriteString(m.Link(m.Escape(string(c.Destination)), label.String()))
			case *ast.AutoLink:
				u := m.Escape(string(c.URL(src)))
				w.WriteString(m.Link(u, u))
			case *ast.CodeSpan:
				w.WriteString(m.Code[0])
				for t := c.FirstChild(); t != nil; t = t.NextSibling() {
					if tn, ok := t.(*ast.Text); ok {
						w.WriteString(m.Escape(string(tn.Segment.Value(src))))
					}
				}
				w.WriteString(m.Code[1])
			case *ast.FencedCodeBlock, *ast.CodeBlock:
				w.WriteString(m.Pre[0])
				lines := c.Lines()
				for i := 0; i < lines.Len(); i++ {
					seg := lines.At(i)
					w.WriteString(m.Escape(string(seg.Value(src))))
				}
				w.WriteString(m.Pre[1] + "\n\n")
			case *ast.Text:
				w.WriteString(m.Escape(string(c.Segment.Value(src))))
				if c.SoftLineBreak() {
					w.WriteString(" ")
				}
				if c.HardLineBreak() {
					w.WriteString("\n")
				}
			case *ast.String:
				w.WriteString(m.Escape(string(c.Value)))
			case *ast.RawHTML, *ast.HTMLBlock:
				// dropped
			default:
				walk(w, c, depth)
			}
		}
	}
	var b strings.Builder
	walk(&b, doc, 0)
	return strings.TrimSpace(b.String())
}
