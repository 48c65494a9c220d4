package campaigns

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/textproto"
	"testing"
	"time"

	"csrdesk/internal/smtptest"
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

// The SMTP transport logs in with the URL's credentials. With a wrong password nothing goes out and nobody is
// failed for it: the server's refusal is not the recipients'.
func TestSMTPAuth(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	sink.RequireAuth("news", "s3cret")
	s, c := campaignFixture(t, 20)
	if _, err := s.Transition(ctx, c.ID, "start"); err != nil {
		t.Fatal(err)
	}
	worker := func(url string) *Worker {
		tr, err := ParseSMTP(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultWorkerConfig()
		cfg.Conns, cfg.PublicURL, cfg.Secret, cfg.Poll = 2, "https://platform.example", []byte("secret"), 20*time.Millisecond
		return NewWorker(s, tr, mustLayout(t), cfg, slog.New(slog.DiscardHandler))
	}
	stop := run(t, worker("smtp://news:wrong@"+sink.Addr+"?tls=none"))
	time.Sleep(time.Second)
	stop()
	if st, err := s.CampaignStatus(ctx, c.ID); err != nil || st.Sent != 0 || st.Failed != 0 || st.State != Running {
		t.Fatalf("with a wrong password: %+v %v", st, err)
	}
	run(t, worker("smtp://news:s3cret@"+sink.Addr+"?tls=none"))
	st := waitState(t, s, c.ID, Finished)
	if recipients, messages, dups := sink.Counts(); st.Sent != 20 || recipients != 20 || messages != 20 || len(dups) != 0 {
		t.Errorf("sent %d; the server got %d messages for %d recipients, duplicates %v", st.Sent, messages, recipients, dups)
	}
}
