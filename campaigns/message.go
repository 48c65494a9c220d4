package campaigns

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"
)

// Message is one mail as it goes over the wire: its envelope, and its text (RFC 5322, CRLF line ends).
type Message struct {
	From, To string // the return path and the one recipient, bare addresses (the transport converts their domains to ASCII)
	Data     []byte
	Campaign int64 // 0 for a mail outside any campaign
	// UTF8 says the header holds an address with a non-ASCII local part (RFC 6532): only a server offering
	// SMTPUTF8 may take the mail. An envelope address with one says so too, so a mail of go-mail's needs no flag.
	UTF8 bool
}

// Boundaries of a campaign mail's parts. A quoted-printable or base64 body never holds "=_" (an "=" starts an
// escape there, or pads the end), so a fixed boundary cannot occur inside a part.
const (
	boundaryAlt   = "=_csrdesk_alt"
	boundaryMixed = "=_csrdesk_mixed"
)

// writeMessage writes a campaign mail: the rendered parts as multipart/alternative, with the campaign's invitation
// attached when it has one. It writes the headers and parts go-mail wrote for it (less go-mail's User-Agent and
// X-Mailer, and with the domains in ASCII and the recipient's name and the subject encoded whenever a reader
// could take them for anything but text: see wireAddress, mailbox, headerValue), the quoted-printable parts byte
// for byte, at a fraction of the cost: most lines of a campaign's mails are the same for every recipient, and
// lines keeps their encoding.
func writeMessage(c *Campaign, sub *Subscriber, r Rendered, unsubURL, token, returnPath string, lines *qpCache, dkim *mail.DKIMSigner) (*Message, error) {
	// The addresses go in with their domains in ASCII, as in the envelope (see smtpConn.envelope); a non-ASCII local
	// part stays as it is, and makes a mail only a server offering SMTPUTF8 takes.
	from, fromUTF8, err := wireAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	to, toUTF8, err := wireAddress(sub.Email)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	b := bytes.NewBuffer(make([]byte, 0, 2048+(len(r.Text)+len(r.HTML))*9/8+len(r.ICS)*4/3))
	domain := from[strings.LastIndexByte(from, '@')+1:]
	sum := sha256.Sum256([]byte(sub.Email))
	header(b, "Date", time.Now().Format(time.RFC1123Z))
	header(b, "From", "<"+from+">")
	header(b, "To", mailbox(sub.Name, to))
	header(b, "Subject", headerValue(r.Subject))
	header(b, "Message-ID", fmt.Sprintf("<c%d.%s.%d@%s>", c.ID, hex.EncodeToString(sum[:8]), time.Now().UnixNano(), domain))
	header(b, "List-Unsubscribe", "<"+unsubURL+">, <mailto:unsubscribe@"+domain+"?subject=unsubscribe%20"+token+">")
	header(b, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	header(b, "Precedence", "bulk")
	header(b, "X-Auto-Response-Suppress", "All")
	header(b, "X-Csrdesk-Campaign", strconv.FormatInt(c.ID, 10))
	header(b, "MIME-Version", "1.0")
	if r.ICS != nil {
		header(b, "Content-Type", `multipart/mixed; boundary="`+boundaryMixed+`"`)
		b.WriteString("\r\n--" + boundaryMixed + "\r\n")
	}
	header(b, "Content-Type", `multipart/alternative; boundary="`+boundaryAlt+`"`)
	b.WriteString("\r\n--" + boundaryAlt + "\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	lines.encode(b, r.Text)
	b.WriteString("\r\n--" + boundaryAlt + "\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	lines.encode(b, r.HTML)
	b.WriteString("\r\n--" + boundaryAlt + "--\r\n")
	if r.ICS != nil {
		b.WriteString("\r\n--" + boundaryMixed + "\r\nContent-Type: text/calendar; charset=utf-8; method=PUBLISH; name=\"invitation.ics\"\r\n" +
			"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"invitation.ics\"\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(r.ICS)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n--" + boundaryMixed + "--\r\n")
	}
	m := &Message{From: returnPath, To: sub.Email, Data: b.Bytes(), Campaign: c.ID, UTF8: fromUTF8 || toUTF8}
	if dkim != nil {
		return m, dkimSign(m, dkim)
	}
	return m, nil
}

// header writes one header field, folded at single spaces so that its lines keep under 78 characters where they can.
// A value never holds a line break: the subject and the name in To go through headerText and are encoded when
// they need it (RFC 2047), the rest is built from checked parts.
func header(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	col := len(name) + 1
	words := strings.Split(value, " ")
	for i, word := range words {
		// Never where spaces run: a reader unfolding with net/textproto's rules makes one space of them.
		if i > 0 && col+1+len(word) > 78 && word != "" && words[i-1] != "" {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		col += 1 + len(word)
	}
	b.WriteString("\r\n")
}

// dkimSign puts a DKIM signature in front of a message.
func dkimSign(m *Message, dkim *mail.DKIMSigner) error {
	end := bytes.Index(m.Data, []byte("\r\n\r\n"))
	sig, err := dkim.Sign(m.Data[:end+2], m.Data[end+4:])
	if err != nil {
		return fmt.Errorf("DKIM: %w", err)
	}
	m.Data = append([]byte(sig), m.Data...)
	return nil
}

// qpCache encodes text in quoted-printable exactly as mime/quotedprintable does, and keeps the encoding of the
// lines it has seen. Line breaks are LF first (quoted-printable writes every one as CRLF anyway): without a CR,
// the encoding of a line does not depend on the lines before it, so a cached line's encoding can be written as
// it is. (With one, mime/quotedprintable holds back what follows a CR and drops the LF after it when the byte in
// between is escaped: "a\r\xcf\n" comes out as "a\r\n=CF", one line break short.)
type qpCache struct {
	mu     sync.RWMutex
	lines  map[string]*qpLine
	size   int
	unused atomic.Int64 // lines not written from the cache yet
}

type qpLine struct {
	enc  string
	used atomic.Bool // written from the cache at least once: a line of the mailing, not of one recipient
}

// What is worth keeping: lines shorter than minCachedLine cost little to encode, and a mailing keeps at most
// maxCachedBytes. Lines that name a recipient (an unsubscribe link) come once each: once maxUnusedLines of them
// wait, or the cache is full, those never used make room. So the cache holds the mailing's own lines and a few
// hundred others, however many recipients it has.
const (
	minCachedLine  = 48
	maxCachedBytes = 1 << 20
	maxUnusedLines = 256
)

var toLF = strings.NewReplacer("\r\n", "\n", "\r", "\n")

func (q *qpCache) encode(b *bytes.Buffer, s string) {
	if strings.IndexByte(s, '\r') >= 0 {
		s = toLF.Replace(s)
	}
	qw := quotedprintable.NewWriter(b)
	for s != "" {
		n := strings.IndexByte(s, '\n') + 1
		if n == 0 {
			io.WriteString(qw, s) // the last line, without a line break: flushed by Close
			break
		}
		line := s[:n]
		s = s[n:]
		if len(line) < minCachedLine {
			io.WriteString(qw, line)
			continue
		}
		q.mu.RLock()
		e := q.lines[line]
		if e != nil && !e.used.Load() && e.used.CompareAndSwap(false, true) {
			q.unused.Add(-1) // under the read lock: no sweep meanwhile
		}
		q.mu.RUnlock()
		if e != nil {
			b.WriteString(e.enc)
			continue
		}
		// After a line break the encoder holds nothing back: what it wrote for the line is all in b.
		start := b.Len()
		io.WriteString(qw, line)
		q.keep(line, string(b.Bytes()[start:]))
	}
	qw.Close()
}

func (q *qpCache) keep(line, enc string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lines == nil {
		q.lines = map[string]*qpLine{}
	}
	if q.lines[line] != nil {
		return
	}
	if q.unused.Load() >= maxUnusedLines || q.size+len(line)+len(enc) > maxCachedBytes {
		for l, e := range q.lines {
			if !e.used.Load() {
				delete(q.lines, l)
				q.size -= len(l) + len(e.enc)
				q.unused.Add(-1)
			}
		}
	}
	if q.size+len(line)+len(enc) <= maxCachedBytes {
		q.lines[strings.Clone(line)] = &qpLine{enc: enc} // not a slice of the whole part
		q.size += len(line) + len(enc)
		q.unused.Add(1)
	}
}
