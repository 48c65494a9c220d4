package campaigns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Transport hands messages to a mail system. Each worker goroutine opens its own Conn and sends through it in
// turn, so an SMTP transport keeps one persistent connection per goroutine. There are two: SMTP, and a folder
// of .eml files for when no mail server is configured.
type Transport interface {
	Open() (Conn, error)
}

// Conn sends messages one after the other.
type Conn interface {
	Send(ctx context.Context, m *Message) error
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
	s.opts = append(s.opts, mail.WithPort(port), mail.WithTimeout(sendTimeout))
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

// Open returns a connection that dials on its first message and again after a failure. go-mail dials (TLS,
// authentication) and speaks SMTP; the message goes as it is written (see writeMessage).
func (s *SMTP) Open() (Conn, error) {
	c, err := mail.NewClient(s.host, s.opts...)
	if err != nil {
		return nil, err
	}
	return &smtpConn{c: c}, nil
}

type smtpConn struct {
	c  *mail.Client
	sc *smtp.Client // nil until dialed
}

// sendTimeout is how long one message may take, and dialing.
const sendTimeout = 30 * time.Second

func (s *smtpConn) Send(ctx context.Context, m *Message) error {
	if s.sc == nil {
		sc, err := s.c.DialToSMTPClientWithContext(ctx)
		if err != nil {
			return connError{err}
		}
		s.sc = sc
	}
	from, to, err := s.envelope(m)
	if err != nil {
		return err // refused here, before a command: the connection is as it was
	}
	err = s.send(m, from, to)
	var reply *textproto.Error
	if err != nil && errors.As(err, &reply) && s.sc.Reset() == nil {
		return err // the server refused this message; the connection goes on
	}
	if err != nil {
		// The connection broke: dial afresh for the next message.
		s.c.CloseWithSMTPClient(s.sc)
		s.sc = nil
	}
	return err
}

// envelope returns a message's return path and recipient as they go into MAIL FROM and RCPT TO, their domains
// in ASCII (IDNA A-labels), and sets go-mail's client to ask for SMTPUTF8 when, and only when, the message needs
// it. go-mail would ask for it in every mail the server offers it for, and a relay may then want SMTPUTF8 of
// every later hop and bounce the mail where it finds none (RFC 6531), all-ASCII as it is. Without SMTPUTF8, a
// non-ASCII local part cannot go at all (RFC 6531 allows no downgrade here): the recipient's fails for good, the
// sender's concerns every message (see unsendable).
func (s *smtpConn) envelope(m *Message) (from, to string, err error) {
	from, fromUTF8, err := wireAddress(m.From)
	if err != nil {
		return "", "", unsendable{sender: true, err: fmt.Errorf("MAIL FROM: %w", err)}
	}
	to, toUTF8, err := wireAddress(m.To)
	if err != nil {
		return "", "", unsendable{err: fmt.Errorf("RCPT TO: %w", err)}
	}
	utf8 := m.UTF8 || fromUTF8 || toUTF8
	if utf8 {
		if ok, _ := s.sc.Extension("SMTPUTF8"); !ok {
			if toUTF8 {
				return "", "", unsendable{err: fmt.Errorf("RCPT TO: %q has a non-ASCII local part, and the mail server does not offer SMTPUTF8 (RFC 6531)", m.To)}
			}
			return "", "", unsendable{sender: true, err: fmt.Errorf("MAIL FROM: the sender's address has a non-ASCII local part, and the mail server does not offer SMTPUTF8 (RFC 6531)")}
		}
	}
	s.sc.SkipSMTPUTF8(!utf8)
	return from, to, nil
}

func (s *smtpConn) send(m *Message, from, to string) error {
	if err := s.sc.UpdateDeadline(sendTimeout); err != nil {
		return connError{err}
	}
	if err := s.sc.Mail("<" + from + ">"); err != nil {
		return senderError{err}
	}
	if err := s.sc.Rcpt("<" + to + ">"); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	// DATA goes over go-mail's connection (smtp.Client.Text) rather than through its DotWriter, which escapes
	// the message a byte at a time: a fifth of a worker's CPU. dotStuff does it a line at a time.
	text := s.sc.Text
	id, err := text.Cmd("DATA")
	if err != nil {
		return connError{err}
	}
	text.StartResponse(id)
	_, _, err = text.ReadResponse(354)
	text.EndResponse(id)
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	dotStuff(text.W, m.Data)
	if err := text.W.Flush(); err != nil {
		return connError{err}
	}
	if _, _, err := text.ReadResponse(250); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// dotStuff writes a message as SMTP DATA (RFC 5321 4.5.2): every line ends in CRLF, a line that starts with "."
// gets a second one, and a line of "." ends it.
func dotStuff(w *bufio.Writer, data []byte) {
	if len(data) == 0 {
		w.WriteString("\r\n") // one empty line
	}
	if len(data) > 0 && data[0] != '.' && bytes.HasSuffix(data, []byte("\r\n")) && !bytes.Contains(data, []byte("\n.")) &&
		bytes.Count(data, []byte("\n")) == bytes.Count(data, []byte("\r\n")) {
		// Nothing to change, as in nearly every mail: no line starts with ".", every line ends in CRLF. One
		// write, rather than one a line.
		w.Write(data)
		w.WriteString(".\r\n")
		return
	}
	for len(data) > 0 {
		if data[0] == '.' {
			w.WriteByte('.')
		}
		n := bytes.IndexByte(data, '\n')
		if n < 0 {
			n = len(data)
		}
		w.Write(bytes.TrimSuffix(data[:n], []byte("\r")))
		w.WriteString("\r\n")
		data = data[min(n+1, len(data)):]
	}
	w.WriteString(".\r\n")
}

func (s *smtpConn) Close() error {
	if s.sc == nil {
		return nil
	}
	err := s.c.CloseWithSMTPClient(s.sc)
	s.sc = nil
	return err
}

// connError is an error of the connection to the mail server, not a reply to a message.
type connError struct{ err error }

func (e connError) Error() string { return "mail server: " + e.err.Error() }
func (e connError) Unwrap() error { return e.err }

// senderError is the server refusing MAIL FROM: the sender, or the session (STARTTLS or AUTH it wants first),
// whoever the recipient is.
type senderError struct{ err error }

func (e senderError) Error() string { return "MAIL FROM: " + e.err.Error() }
func (e senderError) Unwrap() error { return e.err }

// unsendable is a message refused here, before the server saw it: an address it cannot take (a non-ASCII
// local part without SMTPUTF8) or that is none (a domain IDNA refuses). A recipient's is final for them alone,
// and no bounce: the address may be good, through another server. The sender's (From, or the return path)
// concerns every message, as a server refusing MAIL FROM does.
type unsendable struct {
	sender bool
	err    error
}

func (e unsendable) Error() string { return e.err.Error() }
func (e unsendable) Unwrap() error { return e.err }

// Folder writes each message as an .eml file, one folder per campaign: the embedded default when no mail
// server is configured, to see what would be sent.
type Folder struct {
	Dir string
	seq atomic.Int64
}

func (f *Folder) Open() (Conn, error) { return f, nil }
func (f *Folder) Close() error        { return nil }

func (f *Folder) Send(_ context.Context, m *Message) error {
	dir := f.Dir
	if m.Campaign != 0 {
		dir = filepath.Join(dir, strconv.FormatInt(m.Campaign, 10))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	to := strings.NewReplacer("/", "_", "\\", "_", "..", "_", " ", "").Replace(m.To)
	name := fmt.Sprintf("%s-%d-%s.eml", time.Now().UTC().Format("20060102T150405"), f.seq.Add(1), to)
	return os.WriteFile(filepath.Join(dir, name), m.Data, 0o644)
}

// outcome is what happened to one message.
type outcome struct {
	temp   bool // a 4xx: try again later
	down   bool // no reply at all (the server could not be reached, or the connection broke): not the recipient's doing
	sender bool // the server refused the sender (MAIL FROM): not the recipient's doing either
	code   int
	reason string
}

// classify reads a send error. A reply code says what the server thinks of the recipient, unless it refused the
// sender; an error without one is the connection's.
func classify(err error) outcome {
	var reply *textproto.Error
	var conn connError
	var sender senderError
	var refused unsendable
	if errors.As(err, &refused) {
		return outcome{sender: refused.sender, reason: oneLine(err.Error())} // code 0: not the server's word, not a bounce
	}
	if errors.As(err, &reply) && !errors.As(err, &conn) {
		return outcome{temp: reply.Code/100 == 4, sender: errors.As(err, &sender), code: reply.Code, reason: oneLine(err.Error())}
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
