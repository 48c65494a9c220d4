// Package smtptest is an in-process SMTP server for tests (github.com/emersion/go-smtp): it counts what each
// recipient received, keeps the last message with its Return-Path and envelope, and refuses recipients or hangs
// up as told. Like a real server, it refuses a non-ASCII address, or a header holding one, in a transaction
// without SMTPUTF8 (RFC 6531), which it offers only when told (SMTPUTF8).
package smtptest

import (
	"bytes"
	"crypto/tls"
	"hash/fnv"
	"io"
	"log"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Sink is the server.
type Sink struct {
	Addr       string
	mu         sync.Mutex
	got        map[string]int
	messages   map[string]string
	envelopes  map[string]Envelope
	tempFails  map[string]int
	permFail   map[string]bool
	failEvery  int    // 451 to one recipient in every failEvery, by address
	hangUp     bool   // close every connection at its next command
	user, pass string // the credentials a client must give (AUTH PLAIN) before MAIL, when user is set
	tlsOnly    bool   // mail only after STARTTLS; set before the server starts
	smtpUTF8   bool   // offer SMTPUTF8; set before the server starts
}

// Envelope is what a message's MAIL and RCPT commands said, as the server parsed them.
type Envelope struct {
	From, To string // the addresses, without their angle brackets
	SMTPUTF8 bool   // MAIL FROM had the SMTPUTF8 parameter
	Body     string // MAIL FROM's BODY parameter ("8BITMIME", "7BIT"), or ""
}

// Option sets up a sink before it starts.
type Option func(*Sink)

// SMTPUTF8 makes the sink offer SMTPUTF8 (RFC 6531), and so take non-ASCII addresses in a transaction that
// asks for it.
func SMTPUTF8() Option { return func(s *Sink) { s.smtpUTF8 = true } }

// New starts a sink on a free port, stopped when the test ends.
func New(tb testing.TB, opts ...Option) *Sink { tb.Helper(); return start(tb, nil, opts) }

// NewTLS starts a sink that offers STARTTLS with config and takes mail only over TLS.
func NewTLS(tb testing.TB, config *tls.Config, opts ...Option) *Sink {
	tb.Helper()
	return start(tb, config, opts)
}

func start(tb testing.TB, config *tls.Config, opts []Option) *Sink {
	tb.Helper()
	s := &Sink{got: map[string]int{}, messages: map[string]string{}, envelopes: map[string]Envelope{}, tempFails: map[string]int{},
		permFail: map[string]bool{}, tlsOnly: config != nil}
	for _, o := range opts {
		o(s)
	}
	srv := smtp.NewServer(s)
	srv.EnableSMTPUTF8 = s.smtpUTF8
	srv.TLSConfig = config
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.MaxRecipients = 100
	srv.ErrorLog = log.New(io.Discard, "", 0) // clients that hang up are what the fault tests are about
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// RequireAuth makes the server take mail only from clients that authenticate (AUTH PLAIN) as user with pass.
func (s *Sink) RequireAuth(user, pass string) {
	s.mu.Lock()
	s.user, s.pass = user, pass
	s.mu.Unlock()
}

// TempFail makes the next n deliveries to rcpt fail with 450.
func (s *Sink) TempFail(rcpt string, n int) { s.mu.Lock(); s.tempFails[rcpt] = n; s.mu.Unlock() }

// PermFail makes every delivery to rcpt fail with 550.
func (s *Sink) PermFail(rcpt string) { s.mu.Lock(); s.permFail[rcpt] = true; s.mu.Unlock() }

// TempFailEvery makes deliveries to one recipient in n fail with 451 until it is called with 0: always the
// same recipients, as a server throttling some of them would.
func (s *Sink) TempFailEvery(n int) { s.mu.Lock(); s.failEvery = n; s.mu.Unlock() }

// HangUp makes the server close each connection at its next command, without a reply, until it is called with
// false: a mail server going down.
func (s *Sink) HangUp(on bool) { s.mu.Lock(); s.hangUp = on; s.mu.Unlock() }

// TempFailsLeft returns how many 450s rcpt has still to get.
func (s *Sink) TempFailsLeft(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tempFails[rcpt]
}

// Got returns how many messages rcpt received.
func (s *Sink) Got(rcpt string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.got[rcpt] }

// Message returns the last message rcpt received.
func (s *Sink) Message(rcpt string) string { s.mu.Lock(); defer s.mu.Unlock(); return s.messages[rcpt] }

// Envelope returns the envelope of the last message rcpt received.
func (s *Sink) Envelope(rcpt string) Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.envelopes[rcpt]
}

// Counts returns how many recipients got mail, how many messages there were, and who got more than one.
func (s *Sink) Counts() (recipients, messages int, dups []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for to, n := range s.got {
		recipients++
		messages += n
		if n > 1 {
			dups = append(dups, to)
		}
	}
	return
}

func (s *Sink) NewSession(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, c: c}, nil }

type session struct {
	s      *Sink
	c      *smtp.Conn
	from   string
	opts   smtp.MailOptions
	to     []string
	authed bool
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		x.s.mu.Lock()
		defer x.s.mu.Unlock()
		if user != x.s.user || pass != x.s.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		x.authed = true
		return nil
	}), nil
}

// hungUp closes the connection if the sink is told to hang up.
func (x *session) hungUp() bool {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.hangUp {
		x.c.Conn().Close()
	}
	return x.s.hangUp
}

var errHungUp = &smtp.SMTPError{Code: 421, Message: "hung up"} // never reaches the client: the connection is closed

func (x *session) Reset()        { x.from, x.opts, x.to = "", smtp.MailOptions{}, nil }
func (x *session) Logout() error { return nil }

// errNotASCII is what a server says to a non-ASCII address in a transaction without SMTPUTF8 (RFC 6531 3.4 and
// the 5.6.7 of RFC 6533).
var errNotASCII = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "non-ASCII address without SMTPUTF8"}

func (x *session) Mail(from string, opts *smtp.MailOptions) error {
	if x.hungUp() {
		return errHungUp
	}
	x.s.mu.Lock()
	authRequired := x.s.user != ""
	x.s.mu.Unlock()
	if _, ok := x.c.TLSConnectionState(); x.s.tlsOnly && !ok {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "must issue a STARTTLS command first"}
	}
	if authRequired && !x.authed {
		return smtp.ErrAuthRequired
	}
	if !opts.UTF8 && !isASCII(from) {
		return errNotASCII
	}
	x.from, x.opts = from, *opts
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !x.opts.UTF8 && !isASCII(to) {
		return errNotASCII
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.permFail[to] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	if x.s.failEvery > 0 && fnvHash(to)%uint32(x.s.failEvery) == 0 {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "throttled, try later"}
	}
	if x.s.tempFails[to] > 0 {
		x.s.tempFails[to]--
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy, try later"}
	}
	x.to = append(x.to, to)
	return nil
}

func fnvHash(s string) uint32 { h := fnv.New32a(); h.Write([]byte(s)); return h.Sum32() }

func (x *session) Data(r io.Reader) error {
	data, _ := io.ReadAll(r)
	if x.hungUp() {
		return errHungUp
	}
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	if !x.opts.UTF8 && !isASCII(head) {
		// A header in UTF-8 (RFC 6532) needs SMTPUTF8, as an address does.
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "non-ASCII header without SMTPUTF8"}
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	for _, to := range x.to {
		x.s.got[to]++
		// As the delivering server does, the envelope sender goes on top as Return-Path.
		x.s.messages[to] = "Return-Path: <" + x.from + ">\r\n" + string(data)
		x.s.envelopes[to] = Envelope{From: x.from, To: to, SMTPUTF8: x.opts.UTF8, Body: string(x.opts.Body)}
	}
	return nil
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
