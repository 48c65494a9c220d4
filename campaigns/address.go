package campaigns

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// wireAddress is an address as it goes into SMTP commands and header fields: the domain in ASCII (IDNA
// A-labels, "xn--..."), which every server and resolver takes, and the local part as it is. utf8 says the local
// part is not ASCII: that address can only go to a server offering SMTPUTF8 (RFC 6531), in a mail whose header
// may then hold it as it is (RFC 6532). An ASCII address, nearly every one, is returned as it is, without an
// allocation.
//
// The domain is converted with idna.Lookup rather than idna.Registration: csrdesk looks up domains someone
// else registered, as a resolver does (RFC 5891 section 5), and Lookup maps what a person may have typed (a
// full-width dot, compatibility characters) to the name, where Registration refuses all that is not already a
// registry's form. Lookup is also non-transitional (ß stays ß, as registries have it since IDNA 2008) and
// keeps to letters, digits and hyphens, as a mail domain must.
func wireAddress(addr string) (wire string, utf8 bool, err error) {
	if isASCII(addr) {
		return addr, false, nil
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", false, fmt.Errorf("%q is not an email address", addr)
	}
	local, domain := addr[:at], addr[at+1:]
	if !isASCII(domain) {
		ascii, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return "", false, fmt.Errorf("the domain of %q is not an internationalized domain name: %w", addr, err)
		}
		return local + "@" + ascii, !isASCII(local), nil
	}
	return addr, true, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// headerText is s as one line of a header field: a control character (CR and LF among them), or a Unicode
// line or paragraph separator, becomes a space. Encoded (RFC 2047), such a character would otherwise reach the
// reader's subject or To as a line break: a subscriber's name is data, and must not shape the header it goes in.
func headerText(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
					return ' '
				}
				return r
			}, s)
		}
	}
	return s
}

// needsEncoding says whether s must be written as encoded words: it holds a byte that is not printable
// ASCII, or something a reader would take for an encoded word ("=?"), which mime.WordEncoder leaves as it is.
// RFC 2047 has no escape for "=?" but an encoded word of its own: readers decode "=?...?=" wherever it is (Go's
// mime.WordDecoder even within a word), so a name like "=?utf-8?q?a=0Ab?=" written as it is would reach the
// reader as "a", a line break and "b".
func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' {
			return true
		}
	}
	return strings.Contains(s, "=?")
}

// encodedWords writes s as RFC 2047 Q-encoded words of UTF-8, each at most 75 characters and holding whole
// characters, separated by spaces (which a reader drops between encoded words). Only letters, digits and
// "!*+-/" stay as they are: these are all an encoded word may hold in a phrase (RFC 2047 5(3)), where
// mime.QEncoding would leave a "," or a '"' that splits a display name; so the same words serve in the To and
// in the Subject.
func encodedWords(s string) string {
	const prefix, suffix = "=?UTF-8?q?", "?="
	const room = 75 - len(prefix) - len(suffix)
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(prefix) + 3*len(s) + (len(s)/20+1)*(len(prefix)+len(suffix)+1))
	b.WriteString(prefix)
	n := 0 // characters in the current word
	for len(s) > 0 {
		_, size := utf8.DecodeRuneInString(s)
		ch := s[:size]
		s = s[size:]
		w := 3 * size
		if size == 1 && (phraseSafe(ch[0]) || ch[0] == ' ') {
			w = 1
		}
		if n+w > room {
			b.WriteString(suffix + " " + prefix)
			n = 0
		}
		n += w
		for i := 0; i < len(ch); i++ {
			switch c := ch[i]; {
			case c == ' ':
				b.WriteByte('_')
			case w == 1:
				b.WriteByte(c)
			default:
				b.WriteByte('=')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
		}
	}
	b.WriteString(suffix)
	return b.String()
}

// phraseSafe says whether c may stand as it is in a Q-encoded word in a phrase (RFC 2047 5(3)).
func phraseSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!*+-/", c) >= 0
}

// headerValue is text for an unstructured header field (the Subject): on one line, without the spaces around
// it that a reader drops, and as it is unless it needs encoded words.
func headerValue(s string) string {
	s = strings.TrimSpace(headerText(s))
	if needsEncoding(s) {
		return encodedWords(s)
	}
	return s
}

// mailbox is a header field's "name <address>", address being a wire address. The name is written so that a
// reader shows exactly it: as it is when it is words of letters, digits and the like, quoted when it holds
// other ASCII (a comma, a dot, two spaces), encoded words when it is not ASCII or holds "=?".
func mailbox(name, addr string) string {
	name = strings.TrimSpace(headerText(name))
	switch {
	case name == "":
		return "<" + addr + ">"
	case needsEncoding(name):
		return encodedWords(name) + " <" + addr + ">"
	case isAtoms(name):
		return name + " <" + addr + ">"
	}
	var b strings.Builder
	b.Grow(len(name) + len(addr) + 8)
	b.WriteByte('"')
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(name[i])
	}
	b.WriteString(`" <`)
	b.WriteString(addr)
	b.WriteByte('>')
	return b.String()
}

// isAtoms says whether s is atoms (RFC 5322 3.2.3) with one space between each, which a phrase holds as they are.
func isAtoms(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			if i == 0 || i == len(s)-1 || s[i+1] == ' ' {
				return false
			}
			continue
		}
		if !phraseSafe(c) && strings.IndexByte("#$%&'=?^_`{|}~", c) < 0 {
			return false
		}
	}
	return true
}
