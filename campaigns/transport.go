package campaigns

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"
)

// Transport hands messages to a mail system. Each worker goroutine opens its own Conn and sends through it in
// turn, so an SMTP transport keeps one persistent connection per goroutine. There are two: SMTP, and a folder
// of .eml files for when no mail server is configured.
type Transport interface {
	Open() (Conn, error)
}

// Conn sends messages one after the other.
type Conn interface {
	Send(ctx context.Context, m *mail.Msg) error
	Close() error
}

// SMTP sends through a mail server, configured by a URL: smtp://user:pass@host:port?tls=none|starttls|tls.
type SMTP struct {
	host string
	opts []mail.Option
}

// ParseSMTP reads CSRDESK_SMTP_URL.
func ParseSMTP(raw string) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "smtp" || u.Hostname() == "" {
		return nil, fmt.Errorf("SMTP URL: want smtp://user:pass@host:port?tls=none|starttls|tls")
	}
	s := &SMTP{host: u.Hostname()}
	port := 587
	tls := u.Query().Get("tls")
	switch tls {
	case "", "starttls":
		s.opts = append(s.opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case "tls":
		s.opts = append(s.opts, mail.WithSSL())
		port = 465
	case "none":
		s.opts = append(s.opts, mail.WithTLSPolicy(mail.NoTLS))
		port = 25
	default:
		return nil, fmt.Errorf("SMTP URL: tls=%q: want none, starttls or tls", tls)
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("SMTP URL: port %q", p)
		}
	}
	s.opts = append(s.opts, mail.WithPort(port), mail.WithTimeout(30*time.Second), mail.WithoutNoop(), mail.WithoutRset())
	if u.User != nil {
		pass, _ := u.User.Password()
		auth := mail.SMTPAuthPlain
		if tls == "none" {
			auth = mail.SMTPAuthPlainNoEnc
		}
		s.opts = append(s.opts, mail.WithSMTPAuth(auth), mail.WithUsername(u.User.Username()), mail.WithPassword(pass))
	}
	return s, nil
}

// Open returns a connection that dials on its first message and again after a failure.
func (s *SMTP) Open() (Conn, error) {
	c, err := mail.NewClient(s.host, s.opts...)
	if err != nil {
		return nil, err
	}
	return &smtpConn{c: c}, nil
}

type smtpConn struct {
	c      *mail.Client
	dialed bool
}

func (s *smtpConn) Send(ctx context.Context, m *mail.Msg) error {
	if !s.dialed {
		if err := s.c.DialWithContext(ctx); err != nil {
			return err
		}
		s.dialed = true
	}
	err := s.c.Send(m)
	var se *mail.SendError
	if err != nil && (!errors.As(err, &se) || se.ErrorCode() == 0) {
		// The connection broke: dial afresh for the next message.
		s.c.Close()
		s.dialed = false
	}
	return err
}

func (s *smtpConn) Close() error {
	if !s.dialed {
		return nil
	}
	s.dialed = false
	return s.c.Close()
}

// Folder writes each message as an .eml file, one folder per campaign: the embedded default when no mail
// server is configured, to see what would be sent.
type Folder struct {
	Dir string
	seq atomic.Int64
}

func (f *Folder) Open() (Conn, error) { return f, nil }
func (f *Folder) Close() error        { return nil }

func (f *Folder) Send(_ context.Context, m *mail.Msg) error {
	dir := filepath.Join(f.Dir, strings.Join(m.GetGenHeader("X-Csrdesk-Campaign"), ""))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	to := strings.NewReplacer("/", "_", "\\", "_", "..", "_", "<", "", ">", "", " ", "").Replace(strings.Join(m.GetToString(), ","))
	name := fmt.Sprintf("%s-%d-%s.eml", time.Now().UTC().Format("20060102T150405"), f.seq.Add(1), to)
	return m.WriteToFile(filepath.Join(dir, name))
}

// outcome is what happened to one message.
type outcome struct {
	temp   bool // a 4xx: try again later
	down   bool // no reply at all (the server could not be reached, or the connection broke): not the recipient's doing
	code   int
	reason string
}

// classify reads a send error. A reply code says what the server thinks of the recipient; an error without one
// is the connection's, except the few go-mail raises about the message itself before talking to the server.
func classify(err error) outcome {
	var se *mail.SendError
	if errors.As(err, &se) && se.ErrorCode() != 0 {
		return outcome{temp: se.IsTemp(), code: se.ErrorCode(), reason: oneLine(se.Error())}
	}
	if se != nil && (se.Reason == mail.ErrGetSender || se.Reason == mail.ErrGetRcpts || se.Reason == mail.ErrNoUnencoded) {
		return outcome{reason: oneLine(se.Error())}
	}
	return outcome{down: true, reason: oneLine(err.Error())}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
