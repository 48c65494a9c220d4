package campaigns

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kinds of Bounce.
const (
	BounceHard      = "hard"      // the address does not work: stop sending to it
	BounceSoft      = "soft"      // the address may work later: a full mailbox, greylisting, a timeout
	BounceComplaint = "complaint" // the recipient reported the mail as spam through their provider
)

// Bounce is what one report says about one recipient.
type Bounce struct {
	Kind       string // BounceHard, BounceSoft or BounceComplaint
	Recipient  string // the recipient address the report names (Final-Recipient / Original-Recipient / the original To), normalised lower case; may be empty
	Campaign   int64  // from the VERP address or the returned headers' X-Csrdesk-Campaign or Message-ID c<id>.…; 0 when unknown
	Subscriber string // the subscriber id from the VERP address; "" when not found
	Status     string // DSN status code like "5.1.1", "" for complaints
	Reason     string // one line: Diagnostic-Code, or the feedback type, ≤ 300 chars
}

// ErrNotBounce is what ParseBounce returns for a message that reports nothing: a reply, an out-of-office
// notice, a read receipt that reached the bounce mailbox. Callers skip such messages.
var ErrNotBounce = errors.New("not a bounce or complaint report")

const (
	// maxBounceSize bounds what ParseBounce reads. Servers return at most the headers or a copy of our mail,
	// and the machine-readable part comes before the copy, so a longer message is cut rather than refused.
	maxBounceSize = 10 << 20
	// maxReasonLen is in characters, not bytes.
	maxReasonLen = 300
	// maxMIMEDepth and maxMIMEParts bound the work a hostile message can cause; real reports have three parts,
	// with the human-readable one sometimes split in two.
	maxMIMEDepth = 5
	maxMIMEParts = 64
)

// ParseBounce reads one message (RFC 5322, as a mail server delivers it to a mailbox or pipes it) and returns
// what it reports, one Bounce per failed or delayed recipient. It understands RFC 3464 delivery status
// notifications, RFC 5965 feedback (ARF) reports, and, conservatively, plain-text failure notices from a
// mailer daemon sent to one of our VERP addresses. A message that is none of these returns ErrNotBounce; a
// report that delivered or relayed everything returns no bounces and no error; a malformed message returns
// an error wrapping ErrInvalid that says what is wrong.
func ParseBounce(r io.Reader) ([]Bounce, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBounceSize+1))
	if err != nil {
		return nil, fmt.Errorf("bounce: read: %w", err)
	}
	cut := len(data) > maxBounceSize
	if cut {
		data = data[:maxBounceSize]
	}
	data = skipMboxFromLine(data)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("bounce: %w: empty message", ErrInvalid)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("bounce: %w: header: %v", ErrInvalid, err)
	}
	top := textproto.MIMEHeader(msg.Header)
	mt := "text/plain"
	if ct := top.Get("Content-Type"); ct != "" {
		t, _, err := mime.ParseMediaType(ct)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return nil, fmt.Errorf("bounce: %w: Content-Type %q: %v", ErrInvalid, ct, err)
		}
		mt = t
	}

	var w mimeWalker
	w.walk(top, msg.Body, 0)
	if w.err != nil && cut {
		w.err = fmt.Errorf("%w (the message was cut at %d MB)", w.err, maxBounceSize>>20)
	}
	status, hasStatus := w.find("message/delivery-status", "message/global-delivery-status")
	feedback, hasFeedback := w.find("message/feedback-report")
	switch {
	case hasStatus || w.reported("delivery-status"):
		if !hasStatus {
			return nil, w.missing("message/delivery-status")
		}
		return parseDSN(status, msg.Header, w.original())
	case hasFeedback || w.reported("feedback-report"):
		if !hasFeedback {
			return nil, w.missing("message/feedback-report")
		}
		return parseARF(feedback, msg.Header, w.original())
	case len(w.reportTypes) > 0: // a read receipt or another kind of report
		return nil, ErrNotBounce
	case w.err != nil:
		return nil, fmt.Errorf("bounce: %w: %v", ErrInvalid, w.err)
	case mt == "text/plain" || mt == "multipart/mixed":
		return parsePlainBounce(msg.Header, &w)
	}
	return nil, ErrNotBounce
}

// skipMboxFromLine drops the "From sender date" line that local delivery to an mbox file or a pipe puts before
// the header.
func skipMboxFromLine(data []byte) []byte {
	if !bytes.HasPrefix(data, []byte("From ")) {
		return data
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[i+1:]
	}
	return nil
}

// mimePart is a leaf of the MIME tree with its body transfer-decoded.
type mimePart struct {
	mediaType string
	body      []byte
}

// mimeWalker flattens a message's MIME tree into its leaves. It stops at the first structural error and keeps
// what it read in full before it: a report whose returned copy of our mail is cut short still says which
// address failed.
type mimeWalker struct {
	parts       []mimePart
	reportTypes []string // the report-type of every multipart/report met
	err         error
}

func (w *mimeWalker) walk(h textproto.MIMEHeader, body io.Reader, depth int) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		mt = "text/plain" // RFC 2045 5.2: the default for a missing or unreadable Content-Type
	}
	if !strings.HasPrefix(mt, "multipart/") {
		b, err := io.ReadAll(body)
		if err != nil {
			w.err = fmt.Errorf("%s part: %v", mt, err)
			return
		}
		w.parts = append(w.parts, mimePart{mediaType: mt, body: transferDecode(h.Get("Content-Transfer-Encoding"), b)})
		return
	}
	if mt == "multipart/report" {
		w.reportTypes = append(w.reportTypes, strings.ToLower(params["report-type"]))
	}
	if depth >= maxMIMEDepth {
		return
	}
	boundary := params["boundary"]
	if boundary == "" {
		w.err = fmt.Errorf("%s without a boundary", mt)
		return
	}
	mr := multipart.NewReader(body, boundary)
	for w.err == nil && len(w.parts) < maxMIMEParts {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			w.err = fmt.Errorf("%s: %v", mt, err)
			return
		}
		w.walk(p.Header, p, depth+1)
	}
}

// transferDecode undoes base64 and quoted-printable. A body that does not decode in full keeps what did:
// the parsers after this are lenient about content, not about structure.
func transferDecode(cte string, b []byte) []byte {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b))
	case "quoted-printable":
		r = quotedprintable.NewReader(bytes.NewReader(b))
	default:
		return b
	}
	out, _ := io.ReadAll(r)
	return out
}

func (w *mimeWalker) find(types ...string) ([]byte, bool) {
	for _, p := range w.parts {
		for _, t := range types {
			if p.mediaType == t {
				return p.body, true
			}
		}
	}
	return nil, false
}

func (w *mimeWalker) reported(reportType string) bool {
	for _, t := range w.reportTypes {
		if t == reportType {
			return true
		}
	}
	return false
}

func (w *mimeWalker) missing(part string) error {
	if w.err != nil {
		return fmt.Errorf("bounce: %w: %v", ErrInvalid, w.err)
	}
	return fmt.Errorf("bounce: %w: report without a %s part", ErrInvalid, part)
}

// original returns the header of the returned copy of our mail, nil when there is none. It is best effort:
// the fields read before a malformed line are kept.
func (w *mimeWalker) original() mail.Header {
	body, ok := w.find("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers", "message/rfc822-headers")
	if !ok {
		return nil
	}
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(body))).ReadMIMEHeader()
	return mail.Header(h)
}

// parseDSN reads an RFC 3464 message/delivery-status part: a block of per-message fields, then one block per
// recipient, separated by blank lines.
func parseDSN(status []byte, report, orig mail.Header) ([]Bounce, error) {
	blocks, err := fieldBlocks(status)
	if err != nil {
		return nil, fmt.Errorf("bounce: %w: delivery-status: %v", ErrInvalid, err)
	}
	campaign, subscriber := whoseMail(orig, verpCandidates(report, orig.Get("Return-Path"))...)
	var out []Bounce
	recipients := 0
	for _, h := range blocks {
		if h.Get("Final-Recipient") == "" && h.Get("Original-Recipient") == "" && h.Get("Action") == "" {
			continue // the per-message block
		}
		recipients++
		diagnostic := h.Get("Diagnostic-Code")
		code := statusField(h.Get("Status"))
		if code == "" {
			code, _ = enhancedStatus(diagnostic)
		}
		action := strings.ToLower(firstWord(h.Get("Action")))
		var kind string
		switch action {
		case "failed":
			// A failure with a 4.x.x status gave up on a temporary condition, usually a queue timeout: the
			// address may still work.
			kind = BounceSoft
			if strings.HasPrefix(code, "5") {
				kind = BounceHard
			}
		case "delayed":
			kind = BounceSoft
		case "":
			// Action is required; a gateway that leaves it out still says what happened with its status.
			switch {
			case strings.HasPrefix(code, "5"):
				kind, action = BounceHard, "failed"
			case strings.HasPrefix(code, "4"):
				kind, action = BounceSoft, "delayed"
			default:
				continue
			}
		default: // delivered, relayed, expanded
			continue
		}
		rcpt := dsnAddress(h.Get("Original-Recipient"))
		if rcpt == "" {
			rcpt = dsnAddress(h.Get("Final-Recipient"))
		}
		if rcpt == "" {
			rcpt = singleAddress(orig.Get("To"))
		}
		reason := diagnostic
		if strings.TrimSpace(reason) == "" {
			reason = action + " " + code
		}
		out = append(out, Bounce{Kind: kind, Recipient: rcpt, Campaign: campaign, Subscriber: subscriber, Status: code, Reason: reasonLine(reason)})
	}
	if recipients == 0 {
		return nil, fmt.Errorf("bounce: %w: delivery-status names no recipient", ErrInvalid)
	}
	return out, nil
}

// parseARF reads an RFC 5965 message/feedback-report part.
func parseARF(feedback []byte, report, orig mail.Header) ([]Bounce, error) {
	blocks, err := fieldBlocks(feedback)
	if err != nil {
		return nil, fmt.Errorf("bounce: %w: feedback-report: %v", ErrInvalid, err)
	}
	fields := textproto.MIMEHeader{}
	for _, h := range blocks {
		for k, v := range h {
			fields[k] = append(fields[k], v...)
		}
	}
	ftype := strings.ToLower(firstWord(fields.Get("Feedback-Type")))
	switch ftype {
	case "":
		return nil, fmt.Errorf("bounce: %w: feedback report without Feedback-Type", ErrInvalid)
	case "not-spam", "auth-failure":
		// A user taking a mail out of the spam folder, or a DMARC failure report: feedback, not a complaint.
		return nil, nil
	}
	// The report goes to the address registered with the provider's feedback loop; the VERP address is in the
	// returned copy of our mail or in the report's Original-Mail-From.
	cands := []string{orig.Get("Return-Path")}
	cands = append(cands, fields.Values("Original-Mail-From")...)
	campaign, subscriber := whoseMail(orig, append(cands, verpCandidates(report, "")...)...)
	rcpt := singleAddress(orig.Get("To"))
	for _, v := range fields.Values("Original-Rcpt-To") {
		if rcpt != "" {
			break
		}
		rcpt = singleAddress(v)
	}
	return []Bounce{{Kind: BounceComplaint, Recipient: rcpt, Campaign: campaign, Subscriber: subscriber, Reason: reasonLine("complaint: " + ftype)}}, nil
}

// failureSubjects are what mailer daemons put in the subject of a failure notice that is not a DSN, lower case.
var failureSubjects = []string{
	"undelivered mail returned to sender",
	"delivery status notification (failure)",
	"mail delivery failed",
	"undeliverable:",
	"returned mail:",
	"failure notice",
	"delivery failure",
}

// parsePlainBounce recognises a failure notice without a delivery-status part. Without machine-readable fields
// it asks for every sign at once: a mailer daemon sender, a failure subject, and one of our VERP addresses as
// the envelope recipient; a reply that merely quotes a failure does not pass.
func parsePlainBounce(report mail.Header, w *mimeWalker) ([]Bounce, error) {
	if !fromMailerDaemon(report.Get("From")) {
		return nil, ErrNotBounce
	}
	subject := report.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	failed := false
	for _, s := range failureSubjects {
		failed = failed || strings.Contains(strings.ToLower(subject), s)
	}
	if !failed {
		return nil, ErrNotBounce
	}
	// Only the notice's own envelope headers count here: a copy of our mail forwarded by hand carries our
	// VERP address too.
	orig := w.original()
	campaign, subscriber := whoseMail(orig, verpCandidates(report, "")...)
	if subscriber == "" {
		return nil, ErrNotBounce
	}
	b := Bounce{Kind: BounceSoft, Recipient: singleAddress(orig.Get("To")), Campaign: campaign, Subscriber: subscriber, Reason: reasonLine(subject)}
	found := false
	for _, p := range w.parts {
		if p.mediaType != "text/plain" {
			continue
		}
		for line := range strings.Lines(string(p.body)) {
			if !found {
				if code, _ := enhancedStatus(line); code != "" {
					found = true
					b.Status, b.Reason = code, reasonLine(line)
					if code[0] == '5' {
						b.Kind = BounceHard
					}
				}
			}
			// The notice often quotes our mail's header inline; its To is the address that failed.
			if v, ok := cutPrefixFold(line, "To:"); ok && b.Recipient == "" {
				b.Recipient = singleAddress(v)
			}
		}
	}
	return []Bounce{b}, nil
}

func fromMailerDaemon(from string) bool {
	local := strings.TrimSpace(from)
	if a, err := mail.ParseAddress(from); err == nil {
		local = a.Address
	} else if i := strings.IndexAny(local, " \t(<"); i >= 0 { // MAILER-DAEMON (Mail Delivery System)
		local = local[:i]
	}
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	local = strings.ToLower(local)
	return local == "mailer-daemon" || local == "postmaster"
}

// fieldBlocks reads blocks of header-like fields separated by blank lines, as in message/delivery-status and
// message/feedback-report parts. Folded lines are joined.
func fieldBlocks(b []byte) ([]textproto.MIMEHeader, error) {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	var blocks []textproto.MIMEHeader
	for {
		h, err := tp.ReadMIMEHeader()
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(h) > 0 {
			blocks = append(blocks, h)
		}
		if err == io.EOF {
			return blocks, nil
		}
	}
}

// verpRE matches our envelope sender, <local>+<campaign>-<subscriber>@<domain>, anywhere in a header value.
var verpRE = regexp.MustCompile(`(?i)[^\s<>@,;:"()\[\]]+?\+([0-9]{1,18})-([a-z2-7]{10})@[a-z0-9]`)

// messageIDRE matches the Message-ID writeMessage gives a campaign mail.
var messageIDRE = regexp.MustCompile(`^\s*<?c([0-9]{1,18})\.[0-9a-fA-F]{16}\.[0-9]+@`)

// verpCandidates lists where a report names the address it was delivered to, the most specific first, then
// the returned mail's Return-Path.
func verpCandidates(report mail.Header, returnPath string) []string {
	var out []string
	for _, k := range []string{"Delivered-To", "X-Original-To", "Envelope-To", "To"} {
		out = append(out, report[k]...)
	}
	return append(out, returnPath)
}

// whoseMail finds the campaign and subscriber from the first VERP address among cands, then the campaign from
// the returned header's X-Csrdesk-Campaign or Message-ID.
func whoseMail(orig mail.Header, cands ...string) (campaign int64, subscriber string) {
	for _, v := range cands {
		if m := verpRE.FindStringSubmatch(v); m != nil {
			campaign, _ = strconv.ParseInt(m[1], 10, 64)
			subscriber = strings.ToLower(m[2])
			break
		}
	}
	if campaign > 0 {
		return campaign, subscriber
	}
	if id, err := strconv.ParseInt(strings.TrimSpace(orig.Get("X-Csrdesk-Campaign")), 10, 64); err == nil && id > 0 {
		return id, subscriber
	}
	if m := messageIDRE.FindStringSubmatch(orig.Get("Message-Id")); m != nil {
		campaign, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return campaign, subscriber
}

// dsnAddress reads an address field like "rfc822; anna@example.com".
func dsnAddress(v string) string {
	if _, addr, ok := strings.Cut(v, ";"); ok {
		v = addr
	}
	return singleAddress(v)
}

// singleAddress returns the one address in v, lower case, or "" when v holds none or several.
func singleAddress(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		if len(list) != 1 {
			return ""
		}
		v = list[0].Address
	}
	v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || r == '<' || r == '>' || r == ',' }) {
		return ""
	}
	return strings.ToLower(strings.ToValidUTF8(v, ""))
}

// statusField reads a DSN Status field, "5.1.1" with perhaps a comment after it.
func statusField(v string) string {
	v = strings.TrimSpace(v)
	code := statusRE.FindString(v)
	if code == "" || longerNumber(v, len(code)) {
		return ""
	}
	return code
}

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}`)

// enhancedRE matches an RFC 3463 code of class 4 or 5 in free text. Only subjects 0 to 7 are defined, and
// asking for one digit there keeps out versions like "Exim 4.97.1" in a quoted Received line.
var enhancedRE = regexp.MustCompile(`[45]\.[0-7]\.[0-9]{1,3}`)

// enhancedStatus finds the first code enhancedRE matches in s that is not part of a longer dotted number such
// as an IP address or a version, and where it starts; "" and -1 when there is none.
func enhancedStatus(s string) (string, int) {
	for _, loc := range enhancedRE.FindAllStringIndex(s, -1) {
		i, j := loc[0], loc[1]
		if i > 0 && (isDigit(s[i-1]) || s[i-1] == '.') {
			continue
		}
		if longerNumber(s, j) {
			continue
		}
		return s[i:j], i
	}
	return "", -1
}

// longerNumber reports whether the dotted number ending before s[j] goes on.
func longerNumber(s string, j int) bool {
	return j < len(s) && (isDigit(s[j]) || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1]))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func firstWord(s string) string {
	f := strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == ';' || r == '(' })
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// reasonLine makes s one line of valid UTF-8 without control characters, at most maxReasonLen characters, so
// it is safe to store, log and show.
func reasonLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > maxReasonLen {
		s = string([]rune(s)[:maxReasonLen-1]) + "…"
	}
	return s
}
