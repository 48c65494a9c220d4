package campaigns

import (
	"bytes"
	"flag"
	"mime"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with what the code writes now")

// volatile matches the header fields that change from one mail to the next, masked in golden files.
var volatile = regexp.MustCompile(`(?m)^(Date|Message-ID): .*\r$`)

// TestMessageGolden: the mails as a reader's server receives them, header and parts, for recipients whose
// address and name are the hard cases: an IDN, a non-ASCII local part, names that look like an encoded word or
// an address list or hold a line break, and a subject naming them. A change shows as a diff of testdata/mail/;
// go test ./campaigns/ -run TestMessageGolden -update rewrites them.
func TestMessageGolden(t *testing.T) {
	c := &Campaign{ID: 7, From: "news@platform.example"}
	for _, tc := range []struct {
		file string
		sub  *Subscriber
	}{
		{"idn-encoded-word-name.eml", &Subscriber{Email: "anna@bücher.de", ID: "abc", Name: "=?utf-8?q?a=0Ab?="}},
		{"utf8-local-part.eml", &Subscriber{Email: "jörg@example.de", ID: "def", Name: "Müller, Jörg"}},
		{"line-break-in-name.eml", &Subscriber{Email: "ida@example.com", ID: "ghi", Name: "Ida\r\nBcc: all@example.com"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := Rendered{Subject: "Hello " + tc.sub.Name, Text: "Dear " + tc.sub.Name + ",\n\nour news.\n", HTML: "<p>Dear " + tc.sub.Name + ",</p>\n<p>our news.</p>\n"}
			var lines qpCache
			m, err := writeMessage(c, tc.sub, r, "https://platform.example/unsubscribe/tok", "tok", "bounces@platform.example", &lines, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := volatile.ReplaceAll(m.Data, []byte("$1: (masked)\r"))
			file := filepath.Join("testdata", "mail", tc.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (go test ./campaigns/ -run TestMessageGolden -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test ./campaigns/ -run TestMessageGolden -update rewrites it):\n%s", file, got)
			}
		})
	}
}

// stdQP is mime/quotedprintable's encoding of s: what go-mail writes for a part.
func stdQP(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

// checkMessage writes a campaign mail of r and checks it: every line ends in CRLF, it parses, the subject and
// the parts decode to what was rendered, the parts are encoded as go-mail encodes them, and the invitation, if
// any, is attached as it is.
func checkMessage(t *testing.T, lines *qpCache, r Rendered) {
	t.Helper()
	checkMessageTo(t, lines, &Subscriber{Email: "anna@example.it", ID: "abc"}, r)
}

// checkMessageTo is checkMessage for a mail to sub, whose To must read as their name (on one line) and address.
func checkMessageTo(t *testing.T, lines *qpCache, sub *Subscriber, r Rendered) {
	t.Helper()
	c := &Campaign{ID: 7, From: "news@platform.example"}
	m, err := writeMessage(c, sub, r, "https://platform.example/unsubscribe/tok", "tok", "bounces@platform.example", lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "bounces@platform.example" || m.To != sub.Email || m.Campaign != 7 {
		t.Errorf("envelope %q -> %q, campaign %d", m.From, m.To, m.Campaign)
	}
	data := string(m.Data)
	if strings.Count(data, "\n") != strings.Count(data, "\r\n") || strings.Count(data, "\r") != strings.Count(data, "\r\n") {
		t.Fatalf("a line break that is not CRLF:\n%q", data)
	}
	head := data[:strings.Index(data, "\r\n\r\n")]
	for _, line := range strings.Split(head, "\r\n") {
		// Only a word too long to fold may pass 78 characters: a URL, a long encoded word.
		if len(line) > 78 && strings.Contains(strings.TrimSpace(line[strings.Index(line, ":")+1:]), " ") {
			t.Errorf("header line of %d characters left unfolded: %q", len(line), line)
		}
	}
	p := mustParseMail(t, data)
	// The subject as rendered, on one line: a line break in it (from a name, say) is a space.
	subject, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if want := strings.TrimSpace(headerText(r.Subject)); err != nil || subject != want {
		t.Errorf("subject %q (%v), want %q", subject, err, want)
	}
	to, err := p.header.AddressList("To")
	wantTo, _, _ := wireAddress(sub.Email)
	if want := strings.TrimSpace(headerText(sub.Name)); err != nil || len(to) != 1 || to[0].Name != want || to[0].Address != wantTo {
		t.Errorf("To %q reads as %q (%v), want %q <%s>", p.header.Get("To"), to, err, want, wantTo)
	}
	// Quoted-printable text carries line breaks as CRLF, whichever they were.
	crlf := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n")
	if p.parts["text/plain"] != crlf.Replace(r.Text) || p.parts["text/html"] != crlf.Replace(r.HTML) {
		t.Errorf("parts decode to\n%q\n%q\nwant\n%q\n%q", p.parts["text/plain"], p.parts["text/html"], r.Text, r.HTML)
	}
	for _, part := range []string{r.Text, r.HTML} {
		part = toLF.Replace(part)
		if !strings.Contains(data, "\r\n\r\n"+stdQP(part)+"\r\n--"+boundaryAlt) {
			t.Errorf("part %q is not encoded as mime/quotedprintable encodes it (%q)", part, stdQP(part))
		}
	}
	if r.ICS != nil && p.parts["invitation.ics"] != string(r.ICS) {
		t.Errorf("invitation %q, want %q", p.parts["invitation.ics"], r.ICS)
	}
	if got := p.header.Get("List-Unsubscribe"); got != "<https://platform.example/unsubscribe/tok>, <mailto:unsubscribe@platform.example?subject=unsubscribe%20tok>" {
		t.Errorf("List-Unsubscribe %q", got)
	}
}

func TestWriteMessage(t *testing.T) {
	long := strings.Repeat("The platform's news of the month: events, training modules and the sector commitments. ", 20)
	for _, r := range []Rendered{
		{Subject: "CSR news", Text: "Dear Anna,\n\n" + long + "\n", HTML: "<p>Dear Anna,</p>\n<p>" + long + "</p>\n"},
		// Non-ASCII, a subject long enough to fold, an "=" and trailing spaces to escape, CRLF and lone CR line
		// ends, a last line without a line break.
		{Subject: "Einladung zum CSR-Tag der europäischen Werkzeugmaschinenbranche auf der EMO in Hannover, Halle 2 — jetzt anmelden",
			Text: "Grüße an alle =   \r\n" + long + "  \r\n\rnächste Zeile\tmit Tab\t\nohne Zeilenende", HTML: "<p>a=b</p>\r\n" + long},
		{Subject: strings.TrimSpace(strings.Repeat("word ", 40)), Text: "", HTML: "\n\n\n"},
		{Subject: "Invitation", Text: long, HTML: long, ICS: []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + strings.Repeat("X-LINE:"+long[:60]+"\r\n", 5) + "END:VCALENDAR\r\n")},
	} {
		var lines qpCache
		checkMessage(t, &lines, r) // every line encoded afresh
		checkMessage(t, &lines, r) // the long ones from the cache
		if len(lines.lines) == 0 && strings.Contains(r.Text+r.HTML, long+"\n") {
			t.Errorf("no line kept for %q", r.Subject)
		}
	}
}

// The cache keeps no more than maxCachedBytes and maxUnusedLines lines never used again, and encodes the same
// beyond them: lines of one recipient make room for others; a line written from the cache stays. Short lines
// reach the line bound first, long ones the byte bound.
func TestQPCacheBound(t *testing.T) {
	for _, n := range []int{1000, 20000} {
		var lines qpCache
		var b bytes.Buffer
		shared := strings.Repeat("shared line ", 10) + "\n"
		for i := range 1500 {
			s := shared + strconv.Itoa(i) + strings.Repeat("x", n) + "\n"
			b.Reset()
			lines.encode(&b, s)
			if b.String() != stdQP(s) {
				t.Fatalf("text %d encoded %q, want %q", i, b.String(), stdQP(s))
			}
			if lines.size > maxCachedBytes || len(lines.lines) > maxUnusedLines+1 {
				t.Fatalf("lines of %d: after %d texts the cache holds %d lines, %d bytes", n, i+1, len(lines.lines), lines.size)
			}
		}
		unused := 0
		for _, e := range lines.lines {
			if !e.used.Load() {
				unused++
			}
		}
		if int64(unused) != lines.unused.Load() {
			t.Errorf("lines of %d: %d unused lines, counted %d", n, unused, lines.unused.Load())
		}
		if e := lines.lines[shared]; e == nil || !e.used.Load() {
			t.Errorf("lines of %d: the shared line is not kept: %+v", n, e)
		}
		// A line first seen now (the first mail in a language) still finds room.
		late := strings.Repeat("late line ", 3000) + "\n" // longer than any room a full cache has left
		lines.encode(&b, late)
		if lines.lines[late] == nil {
			t.Errorf("lines of %d: no room for a new line: %d lines, %d bytes", n, len(lines.lines), lines.size)
		}
	}
}

// FuzzMessage: whatever was rendered, and whatever the subscriber's name, the mail written for it parses and
// decodes to it (the subject and the name in To on one line, whatever they look like), its parts encoded as
// mime/quotedprintable encodes them, from the cache as afresh.
func FuzzMessage(f *testing.F) {
	f.Add("Subject", "text\n", "<p>html</p>", "Anna Rossi")
	f.Add("Grüße", "a =\r\n\r\n"+strings.Repeat("long line ", 20)+"\n", "x\ry\n\tz ", "")
	f.Add("Hello =?utf-8?q?a=0Ab?=", "x", "y", "=?utf-8?q?a=0Ab?=")
	f.Add("Grüße an Müller, Jörg\r\nBcc: x@example.com", "x", "y", "Müller, \"Jörg\"\r\nBcc: x@example.com")
	f.Fuzz(func(t *testing.T, subject, text, html, name string) {
		subject = strings.TrimSpace(subject) // as Render does
		var lines qpCache
		r := Rendered{Subject: subject, Text: text, HTML: html}
		sub := &Subscriber{Email: "anna@example.it", ID: "abc", Name: name}
		checkMessageTo(t, &lines, sub, r)
		checkMessageTo(t, &lines, sub, r)
	})
}
