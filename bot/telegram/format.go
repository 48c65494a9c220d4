package telegram

import (
	"html"
	"strings"
	"unicode/utf8"

	"csrdesk/bot"
)

// maxText is Telegram's limit on a message's text, in characters (after entities are parsed; tags do not count,
// but a margin keeps us clear of it for messages that are mostly markup).
const maxText = 4096

// telegramHTML is the small HTML subset Telegram accepts (b, i, a, code, pre).
var telegramHTML = bot.Markup{
	Escape: html.EscapeString,
	Bold:   [2]string{"<b>", "</b>"},
	Italic: [2]string{"<i>", "</i>"},
	Code:   [2]string{"<code>", "</code>"},
	Pre:    [2]string{"<pre>", "</pre>"},
	Link:   func(url, label string) string { return `<a href="` + url + `">` + label + "</a>" },
}

// toHTML renders the bot's Markdown for Telegram's HTML parse mode.
func toHTML(md string) string { return bot.Render(md, telegramHTML) }

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
