package campaigns

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// dotWriter is what net/textproto (go-mail's DotWriter) sends for data.
func dotWriter(data []byte) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	dw := textproto.NewWriter(w).DotWriter()
	dw.Write(data)
	dw.Close()
	w.Flush()
	return b.String()
}

func dotStuffed(data []byte) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	dotStuff(w, data)
	w.Flush()
	return b.String()
}

// dotStuff sends what net/textproto's DotWriter sends (for data without a lone CR).
func TestDotStuff(t *testing.T) {
	for _, data := range []string{"", "a", "a\r\n", ".\r\n", "a\r\n.\r\n.b\r\n..\r\n", "bare\nlf\n.x", "a\r\n\r\n", ".", "\n", "\r\n.",
		"Subject: x\r\n\r\n=C3=A4\r\n--=_csrdesk_alt--\r\n"} {
		if got, want := dotStuffed([]byte(data)), dotWriter([]byte(data)); got != want {
			t.Errorf("%q: sent %q, want %q", data, got, want)
		}
	}
}

func FuzzDotStuff(f *testing.F) {
	f.Add([]byte("a\r\n.b\nc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Count(data, []byte("\r")) != bytes.Count(data, []byte("\r\n")) {
			return // a CR alone: the messages csrdesk writes have none, and DotWriter's handling of one is a quirk
		}
		if got, want := dotStuffed(data), dotWriter(data); got != want {
			t.Errorf("%q: sent %q, want %q", data, got, want)
		}
	})
}
