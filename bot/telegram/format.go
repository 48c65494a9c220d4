package telegram

import (
	"html"
	"strings"
	"unicode/utf8"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// maxText is Telegram's limit on a message's text, in characters (after entities are parsed; tags do not count,
// but a margin keeps us clear of it for messages that are mostly markup).
const maxText = 4096

// toHTML renders the bot's Markdown as the small HTML subset Telegram accepts (b, i, a, code, pre), escaping
// everything else. Lists become "•" lines and headings bold lines, since Telegram has neither.
func toHTML(md string) string {
	src := []byte(md)
	doc := goldmark.DefaultParser().Parse(text.NewReader(src))
	var b strings.Builder
	var walk func(n ast.Node, depth int)
	walk = func(n ast.Node, depth int) {
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			switch c := c.(type) {
			case *ast.Paragraph, *ast.TextBlock:
				walk(c, depth)
				if c.NextSibling() != nil {
					if _, inItem := c.Parent().(*ast.ListItem); inItem {
						b.WriteString("\n")
					} else {
						b.WriteString("\n\n")
					}
				}
			case *ast.Heading:
				b.WriteString("<b>")
				walk(c, depth)
				b.WriteString("</b>\n\n")
			case *ast.List:
				for i, item := 0, c.FirstChild(); item != nil; i, item = i+1, item.NextSibling() {
					b.WriteString(strings.Repeat("  ", depth))
					if c.IsOrdered() {
						b.WriteString(itoa(c.Start+i) + ". ")
					} else {
						b.WriteString("• ")
					}
					walk(item, depth+1)
					b.WriteString("\n")
				}
				if c.NextSibling() != nil {
					b.WriteString("\n")
				}
			case *ast.ListItem:
				walk(c, depth)
			case *ast.Emphasis:
				tag := "i"
				if c.Level >= 2 {
					tag = "b"
				}
				b.WriteString("<" + tag + ">")
				walk(c, depth)
				b.WriteString("</" + tag + ">")
			case *ast.Link:
				b.WriteString(`<a href="` + html.EscapeString(string(c.Destination)) + `">`)
				walk(c, depth)
				b.WriteString("</a>")
			case *ast.AutoLink:
				u := string(c.URL(src))
				b.WriteString(`<a href="` + html.EscapeString(u) + `">` + html.EscapeString(u) + "</a>")
			case *ast.CodeSpan:
				b.WriteString("<code>")
				for t := c.FirstChild(); t != nil; t = t.NextSibling() {
					if tn, ok := t.(*ast.Text); ok {
						b.WriteString(html.EscapeString(string(tn.Segment.Value(src))))
					}
				}
				b.WriteString("</code>")
			case *ast.FencedCodeBlock, *ast.CodeBlock:
				b.WriteString("<pre>")
				lines := c.Lines()
				for i := 0; i < lines.Len(); i++ {
					seg := lines.At(i)
					b.WriteString(html.EscapeString(string(seg.Value(src))))
				}
				b.WriteString("</pre>\n\n")
			case *ast.Text:
				b.WriteString(html.EscapeString(string(c.Segment.Value(src))))
				if c.SoftLineBreak() {
					b.WriteString(" ")
				}
				if c.HardLineBreak() {
					b.WriteString("\n")
				}
			case *ast.String:
				b.WriteString(html.EscapeString(string(c.Value)))
			case *ast.RawHTML, *ast.HTMLBlock:
				// dropped, as in the web chat
			default:
				walk(c, depth)
			}
		}
	}
	walk(doc, 0)
	return strings.TrimSpace(b.String())
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// split cuts Markdown into parts whose rendering fits one Telegram message: between paragraphs where it can,
// else between lines, else between words, else anywhere.
func split(md string, limit int) []string {
	var parts []string
	for utf8.RuneCountInString(md) > limit {
		cut := cutPoint(md, limit)
		parts = append(parts, strings.TrimSpace(md[:cut]))
		md = strings.TrimSpace(md[cut:])
	}
	if md != "" || len(parts) == 0 {
		parts = append(parts, md)
	}
	return parts
}

func cutPoint(s string, limit int) int {
	// the byte offset of the limit-th rune
	end := len(s)
	for i := range s {
		if limit == 0 {
			end = i
			break
		}
		limit--
	}
	for _, sep := range []string{"\n\n", "\n", " "} {
		if i := strings.LastIndex(s[:end], sep); i > end/2 {
			return i + len(sep)
		}
	}
	return end
}
