// Package smtptest is an in-process SMTP server for tests (github.com/emersion/go-smtp): it counts what each
// recipient received, keeps the last message with its Return-Path, and refuses recipients or hangs up as told.
package smtptest

import (
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
	tempFails  map[string]int
	permFail   map[string]bool
	failEvery  int    // 451 to one recipient in every failEvery, by address
	hangUp     bool   // close every connection at its next command
	user, pass string // the credentials a client must give (AUTH PLAIN) before MAIL, when user is set
	tlsOnly    bool   // mail only after STARTTLS; set before the server starts
}

// New starts a sink on a free port, stopped when the test ends.
func New(tb testing.TB) *Sink { tb.Helper(); return start(tb, nil) }

// NewTLS starts a sink that offers STARTTLS with config and takes mail only over TLS.
func NewTLS(tb testing.TB, config *tls.Config) *Sink { tb.Helper(); return start(tb, config) }

func start(tb testing.TB, config *tls.Config) *Sink {
	tb.Helper()
	s := &Sink{got: map[string]int{}, messages: map[string]string{}, tempFails: map[string]int{}, permFail: map[string]bool{},
		tlsOnly: config != nil}
	srv := smtp.NewServer(s)
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

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
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
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
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
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	for _, to := range x.to {
		x.s.got[to]++
		// As the delivering server does, the envelope sender goes on top as Return-Path.
		x.s.messages[to] = "Return-Path: <" + x.from + ">\r\n" + string(data)
	}
	return nil
}
