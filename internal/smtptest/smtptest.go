// Package smtptest is an in-process SMTP server for tests (github.com/emersion/go-smtp): it counts what each
// recipient received, keeps the last message with its Return-Path, and refuses recipients as told.
package smtptest

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Sink is the server.
type Sink struct {
	Addr      string
	mu        sync.Mutex
	got       map[string]int
	messages  map[string]string
	tempFails map[string]int
	permFail  map[string]bool
}

// New starts a sink on a free port, stopped when the test ends.
func New(tb testing.TB) *Sink {
	tb.Helper()
	s := &Sink{got: map[string]int{}, messages: map[string]string{}, tempFails: map[string]int{}, permFail: map[string]bool{}}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	srv.MaxRecipients = 100
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// TempFail makes the next n deliveries to rcpt fail with 450.
func (s *Sink) TempFail(rcpt string, n int) { s.mu.Lock(); s.tempFails[rcpt] = n; s.mu.Unlock() }

// PermFail makes every delivery to rcpt fail with 550.
func (s *Sink) PermFail(rcpt string) { s.mu.Lock(); s.permFail[rcpt] = true; s.mu.Unlock() }

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

func (s *Sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

type session struct {
	s    *Sink
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.permFail[to] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	if x.s.tempFails[to] > 0 {
		x.s.tempFails[to]--
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy, try later"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	data, _ := io.ReadAll(r)
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	for _, to := range x.to {
		x.s.got[to]++
		// As the delivering server does, the envelope sender goes on top as Return-Path.
		x.s.messages[to] = "Return-Path: <" + x.from + ">\r\n" + string(data)
	}
	return nil
}
