package campaigns

import (
	"context"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"csrdesk/internal/smtptest"
)

func TestWireAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		utf8     bool
	}{
		{"anna@example.it", "anna@example.it", false},
		{"anna@bücher.de", "anna@xn--bcher-kva.de", false},
		{"anna@xn--bcher-kva.de", "anna@xn--bcher-kva.de", false},
		{"leo@straße.de", "leo@xn--strae-oqa.de", false}, // non-transitional: ß is not ss
		{"ida@ｅｘａｍｐｌｅ。com", "ida@example.com", false},    // full-width, as typed on some keyboards
		{"jörg@example.de", "jörg@example.de", true},
		{"jörg@bücher.de", "jörg@xn--bcher-kva.de", true},
	} {
		got, utf8, err := wireAddress(tc.in)
		if err != nil || got != tc.want || utf8 != tc.utf8 {
			t.Errorf("wireAddress(%q) = %q, %v, %v; want %q, %v", tc.in, got, utf8, err, tc.want, tc.utf8)
		}
	}
	for _, bad := range []string{"anna@bü_cher.de", "anna@-bücher.de", "bücher.de"} {
		if got, _, err := wireAddress(bad); err == nil {
			t.Errorf("wireAddress(%q) = %q, want an error", bad, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { wireAddress("anna.rossi@example.it") }); n != 0 {
		t.Errorf("an ASCII address costs %v allocations", n)
	}
}

// A name reaches the reader as it is, whatever it looks like: an encoded word, a header, a list of addresses.
func TestMailbox(t *testing.T) {
	for _, tc := range []struct{ name, want, header string }{
		{"", "", "<a@example.it>"},
		{"Anna Rossi", "Anna Rossi", "Anna Rossi <a@example.it>"},
		{"O'Brien", "O'Brien", "O'Brien <a@example.it>"},
		{"Rossi, Anna", "Rossi, Anna", `"Rossi, Anna" <a@example.it>`},
		{`Anna "Nana" R. \o/`, `Anna "Nana" R. \o/`, `"Anna \"Nana\" R. \\o/" <a@example.it>`},
		{"Anna  Rossi", "Anna  Rossi", `"Anna  Rossi" <a@example.it>`},
		{"=?utf-8?q?a=0Ab?=", "=?utf-8?q?a=0Ab?=", ""},
		{"x=?utf-8?b?QmNjOg==?=", "x=?utf-8?b?QmNjOg==?=", ""},
		{"Müller, Jörg", "Müller, Jörg", "=?UTF-8?q?M=C3=BCller=2C_J=C3=B6rg?= <a@example.it>"},
		{"Anna\r\nBcc: x@example.com", "Anna  Bcc: x@example.com", ""},
		{"Anna\u2028Rossi\x00", "Anna Rossi", ""},
		{" \r\n ", "", "<a@example.it>"},
		{strings.Repeat("Ζωή ", 30), strings.TrimSpace(strings.Repeat("Ζωή ", 30)), ""},
	} {
		h := mailbox(tc.name, "a@example.it")
		if tc.header != "" && h != tc.header {
			t.Errorf("mailbox(%q) = %s, want %s", tc.name, h, tc.header)
		}
		if strings.ContainsAny(h, "\r\n") {
			t.Errorf("mailbox(%q) = %q: a line break", tc.name, h)
		}
		a, err := mail.ParseAddress(h)
		if err != nil || a.Name != tc.want || a.Address != "a@example.it" {
			t.Errorf("mailbox(%q) = %s reads as %q (%v), want %q", tc.name, h, a, err, tc.want)
		}
	}
}

func TestEncodedWords(t *testing.T) {
	for _, s := range []string{"a", "=?utf-8?q?a=0Ab?=", strings.Repeat("€", 40), strings.Repeat("ab ", 50), "\xff\xfe", "_ _=?"} {
		enc := encodedWords(s)
		for _, w := range strings.Split(enc, " ") {
			if len(w) > 75 || !strings.HasPrefix(w, "=?UTF-8?q?") || !strings.HasSuffix(w, "?=") {
				t.Errorf("%q: word %q", s, w)
			}
		}
		if got, err := new(mime.WordDecoder).DecodeHeader(enc); err != nil || got != s {
			t.Errorf("%q: encoded as %q, decodes to %q (%v)", s, enc, got, err)
		}
	}
}

// internationalFixture is a started campaign to a subscriber at an IDN domain, one with a non-ASCII local part
// and two with neither, named things that look like encoded words or address lists, with a subject that names
// them.
func internationalFixture(t *testing.T) (*Store, *Campaign) {
	t.Helper()
	ctx := context.Background()
	s := mustStore(t, "all")
	csv := "email,name,language\n" +
		"lea@example.fr,Léa Martin,fr\n" +
		"ida@example.com,=?utf-8?q?a=0Ab?=,en\n" +
		"anna@bücher.de,=?utf-8?q?a=0Ab?=,de\n" +
		"jörg@example.de,\"Müller, Jörg\",de\n"
	if rep, err := s.Import(ctx, strings.NewReader(csv), ImportOptions{List: "all", Confirmed: true}); err != nil || rep.Added != 4 {
		t.Fatalf("import: %+v %v", rep, err)
	}
	content := Content{Subject: map[string]string{"": "Hello {{.Subscriber.Name}}"}, Body: map[string]string{"": "Dear {{.Subscriber.Name}}"}}
	c, err := s.CreateCampaign(ctx, Campaign{Name: "idn", Lists: []string{"all"}, From: "news@platform.example", Content: content},
		func(c Content) error { _, err := Compile(c, mustLayout(t)); return err })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, c.ID, "start"); err != nil {
		t.Fatal(err)
	}
	return s, c
}

// checkReceived checks what the sink received for rcpt (as it went in RCPT TO): the To header reads as name and
// rcpt, the subject as "Hello " and the name, and MAIL FROM asked for SMTPUTF8 only if utf8.
func checkReceived(t *testing.T, sink *smtptest.Sink, rcpt, name string, utf8 bool) {
	t.Helper()
	if sink.Got(rcpt) != 1 {
		t.Errorf("%s got %d messages", rcpt, sink.Got(rcpt))
		return
	}
	if env := sink.Envelope(rcpt); env.SMTPUTF8 != utf8 || env.To != rcpt {
		t.Errorf("%s: envelope %+v, want SMTPUTF8 %v", rcpt, env, utf8)
	}
	p := mustParseMail(t, sink.Message(rcpt))
	to, err := p.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != name || to[0].Address != rcpt {
		t.Errorf("%s: To %q reads as %q (%v), want %q <%s>", rcpt, p.header.Get("To"), to, err, name, rcpt)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil || subject != "Hello "+name {
		t.Errorf("%s: Subject %q reads as %q (%v), want %q", rcpt, p.header.Get("Subject"), subject, err, "Hello "+name)
	}
}

// An IDN goes out as punycode, in RCPT TO and in To; a non-ASCII local part goes out with SMTPUTF8, which
// only its mail asks for; names reach the reader as the literal text they are.
func TestInternationalAddressesWithSMTPUTF8(t *testing.T) {
	sink := smtptest.New(t, smtptest.SMTPUTF8())
	s, c := internationalFixture(t)
	run(t, testWorker(t, s, sink.Addr, DefaultWorkerConfig()))
	if st := waitState(t, s, c.ID, Finished); st.Sent != 4 || st.Failed != 0 {
		t.Errorf("status %+v", st)
	}
	if sink.Got("anna@bücher.de") != 0 {
		t.Error("the IDN went out in UTF-8")
	}
	checkReceived(t, sink, "anna@xn--bcher-kva.de", "=?utf-8?q?a=0Ab?=", false)
	checkReceived(t, sink, "jörg@example.de", "Müller, Jörg", true)
	checkReceived(t, sink, "lea@example.fr", "Léa Martin", false)
	checkReceived(t, sink, "ida@example.com", "=?utf-8?q?a=0Ab?=", false)
}

// Without SMTPUTF8, the address with a non-ASCII local part cannot go: that recipient fails for good with a
// reason that says so, not as a bounce, and the others are sent.
func TestInternationalAddressesWithoutSMTPUTF8(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	s, c := internationalFixture(t)
	cfg := DefaultWorkerConfig()
	cfg.HardBounces = 1 // one bounce would mark the subscriber
	run(t, testWorker(t, s, sink.Addr, cfg))
	if st := waitState(t, s, c.ID, Finished); st.Sent != 3 || st.Failed != 1 || st.Retrying != 0 {
		t.Errorf("status %+v", st)
	}
	checkReceived(t, sink, "anna@xn--bcher-kva.de", "=?utf-8?q?a=0Ab?=", false)
	checkReceived(t, sink, "lea@example.fr", "Léa Martin", false)
	checkReceived(t, sink, "ida@example.com", "=?utf-8?q?a=0Ab?=", false)
	fails, err := s.Failures(ctx, c.ID)
	if err != nil || len(fails) != 1 || fails[0].Email != "jörg@example.de" || fails[0].Code != 0 || !strings.Contains(fails[0].Reason, "SMTPUTF8") {
		t.Errorf("failures: %+v %v", fails, err)
	}
	if st := status(t, s, "jörg@example.de"); st != Active {
		t.Errorf("the subscriber is %s: a server without SMTPUTF8 is no bounce", st)
	}
}

// The transport alone: a message refused for want of SMTPUTF8 leaves the connection as it was, for the next.
func TestSMTPUTF8RefusalKeepsTheConnection(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.New(t)
	tr, err := ParseSMTP("smtp://" + sink.Addr + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tr.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(to string) error {
		data := fmt.Sprintf("From: <news@platform.example>\r\nTo: <%s>\r\nSubject: x\r\n\r\nx\r\n", to)
		return conn.Send(ctx, &Message{From: "news@platform.example", To: to, Data: []byte(data)})
	}
	if err := send("lea@example.fr"); err != nil {
		t.Fatal(err)
	}
	sc := conn.(*smtpConn).sc
	err = send("jörg@example.de")
	if o := classify(err); err == nil || o.down || o.sender || o.temp || !strings.Contains(o.reason, "SMTPUTF8") {
		t.Errorf("sending to jörg@example.de: %v, classified %+v", err, o)
	}
	if err := send("ida@example.com"); err != nil || conn.(*smtpConn).sc != sc {
		t.Errorf("after the refusal: %v, the same connection %v", err, conn.(*smtpConn).sc == sc)
	}
	// A sender with a non-ASCII local part concerns every message: the server refusing MAIL FROM would too.
	err = conn.Send(ctx, &Message{From: "nachrichten@platform.example", To: "ida@example.com", Data: []byte("From: <bjørn@platform.example>\r\n\r\nx\r\n"), UTF8: true})
	if o := classify(err); err == nil || !o.sender || o.down {
		t.Errorf("a UTF-8 From: %v, classified %+v", err, o)
	}
}

// The confirmation mail of an address at an international domain names its domain in ASCII in To, as campaign
// mails do: a server without SMTPUTF8 refuses raw UTF-8 in a header.
func TestConfirmationToIDN(t *testing.T) {
	sink := smtptest.New(t)
	_, sub, _ := mustSubscriptions(t, sink)
	if err := sub.Subscribe(context.Background(), Subscription{Email: "lea@bücher.example", Via: "api"}); err != nil {
		t.Fatal(err)
	}
	m := sink.Message("lea@xn--bcher-kva.example")
	if !strings.Contains(m, "To: <lea@xn--bcher-kva.example>") && !strings.Contains(m, "To: lea@xn--bcher-kva.example") {
		t.Errorf("the confirmation mail's To is not in ASCII:\n%.600s", m)
	}
}
