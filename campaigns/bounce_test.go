package campaigns

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseBounceSamples(t *testing.T) {
	tests := []struct {
		file    string
		want    []Bounce
		wantErr error
		errText string
	}{
		{file: "postfix-5.1.1.eml", want: []Bounce{{
			Kind: BounceHard, Recipient: "anna.muster@example.com", Campaign: 12, Subscriber: "k3j4m5n6p7", Status: "5.1.1",
			Reason: "smtp; 550 5.1.1 <Anna.Muster@Example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		}}},
		{file: "exim-4xx-delayed.eml", want: []Bounce{{
			Kind: BounceSoft, Recipient: "bert@example.com", Campaign: 7, Subscriber: "abcdefgh23", Status: "4.0.0",
			Reason: "smtp; 451 4.7.1 Greylisted, please try again later",
		}}},
		{file: "gmail-style-failure.eml", want: []Bounce{{
			// Original-Recipient, the address we sent to, wins over the forwarded Final-Recipient.
			Kind: BounceHard, Recipient: "carla.beispiel@example.com", Campaign: 15, Subscriber: "q2w3e4r5t6", Status: "5.1.1",
			Reason: "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking " +
				"the recipient's email address for typos or unnecessary spaces. For more information, go to 550 5.1.1 " +
				"https://support.example.com/mail/answer/0000 a1b2c3d4e5f6 - mx",
		}}},
		{file: "exchange-ndr.eml", want: []Bounce{{
			Kind: BounceHard, Recipient: "erik.beispiel@example.com", Campaign: 21, Subscriber: "zz7yx6wv5u", Status: "5.7.1",
			Reason: "smtp;550 5.7.1 RESOLVER.RST.AuthRequired; authentication required [Stage: CreateMessage]",
		}}},
		{file: "arf-abuse.eml", want: []Bounce{{
			Kind: BounceComplaint, Recipient: "frida.example@example.com", Campaign: 12, Subscriber: "m4n5b6v7c2",
			Reason: "complaint: abuse",
		}}},
		{file: "plain-undeliverable.eml", want: []Bounce{{
			Kind: BounceHard, Recipient: "dora@example.com", Campaign: 9, Subscriber: "h2j3k4l5m6", Status: "5.1.1",
			Reason: "550 5.1.1 No such user here",
		}}},
		{file: "not-a-bounce.eml", wantErr: ErrNotBounce},
		{file: "broken-no-boundary.eml", wantErr: ErrInvalid, errText: "multipart/report without a boundary"},
		{file: "broken-truncated.eml", wantErr: ErrInvalid, errText: "message/delivery-status part: unexpected EOF"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseBounce(bytes.NewReader(mustReadBounce(t, tc.file)))
			checkBounceErr(t, err, tc.wantErr, tc.errText)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseBounce(%s) (-want +got):\n%s", tc.file, diff)
			}
		})
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bounces", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s is not in the table", f)
		}
	}
}

// dsnMessage builds a delivery status notification sent to a VERP address, with the given delivery-status
// part and returned headers.
func dsnMessage(status, returned string) string {
	return "Delivered-To: bounces+5-abcdefghij@platform.example\n" +
		"From: MAILER-DAEMON@mail.platform.example\n" +
		"To: bounces+5-abcdefghij@platform.example\n" +
		"Subject: Undelivered Mail Returned to Sender\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=BB\n\n" +
		"--BB\nContent-Type: text/plain\n\nYour mail could not be delivered.\n" +
		"--BB\nContent-Type: message/delivery-status\n\n" + status + "\n" +
		"--BB\nContent-Type: text/rfc822-headers\n\n" + returned + "\n" +
		"--BB--\n"
}

const (
	perMessage   = "Reporting-MTA: dns; mail.platform.example\n\n"
	ourHeaders   = "To: ida@example.com\nMessage-ID: <c5.0011223344556677.1737000000000000000@platform.example>\nX-Csrdesk-Campaign: 5\n"
	failedStatus = perMessage + "Final-Recipient: rfc822; ida@example.com\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n"
)

func TestParseBounceCases(t *testing.T) {
	hard := Bounce{Kind: BounceHard, Recipient: "ida@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "5.1.1", Reason: "smtp; 550 5.1.1 unknown"}
	withoutVERP := strings.NewReplacer("bounces+5-abcdefghij@", "bounces@").Replace(dsnMessage(failedStatus, ourHeaders))
	fromHeaders := hard
	fromHeaders.Subscriber = ""
	longCopy := dsnMessage(failedStatus, ourHeaders+"X-Filler: "+strings.Repeat("x", 11<<20))
	tests := []struct {
		name    string
		msg     string
		want    []Bounce
		wantErr error
		errText string
	}{
		{name: "several recipients", msg: dsnMessage(perMessage+
			"Final-Recipient: rfc822; a@example.com\nAction: delivered\nStatus: 2.0.0\n\n"+
			"Final-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.2.2 (mailbox full)\nDiagnostic-Code: smtp; 552 5.2.2 over quota\n\n"+
			"Final-Recipient: rfc822; c@example.com\nAction: failed\nStatus: 4.4.7\nDiagnostic-Code: X-Postfix; delivery temporarily suspended\n\n"+
			"Final-Recipient: rfc822; d@example.com\nAction: Delayed\nStatus: 4.2.0\n\n\n"+
			"Final-Recipient: rfc822; e@example.com\nAction: relayed\nStatus: 2.0.0\n\n"+
			"Final-Recipient: rfc822; f@example.com\nStatus: 5.1.10\n\n"+
			"Final-Recipient: rfc822; g@example.com\nAction: failed\n", ourHeaders),
			want: []Bounce{
				{Kind: BounceHard, Recipient: "b@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "5.2.2", Reason: "smtp; 552 5.2.2 over quota"},
				{Kind: BounceSoft, Recipient: "c@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "4.4.7", Reason: "X-Postfix; delivery temporarily suspended"},
				{Kind: BounceSoft, Recipient: "d@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "4.2.0", Reason: "delayed 4.2.0"},
				{Kind: BounceHard, Recipient: "f@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "5.1.10", Reason: "failed 5.1.10"},
				// Failed without a status: nothing says the address is gone.
				{Kind: BounceSoft, Recipient: "g@example.com", Campaign: 5, Subscriber: "abcdefghij", Reason: "failed"},
			}},
		{name: "status from the diagnostic code", msg: dsnMessage(perMessage+
			"Final-Recipient: rfc822; ida@example.com\nAction: failed\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n", ourHeaders),
			want: []Bounce{hard}},
		{name: "success notification", msg: dsnMessage(perMessage+"Final-Recipient: rfc822; ida@example.com\nAction: delivered\nStatus: 2.0.0\n", ourHeaders)},
		{name: "campaign from X-Csrdesk-Campaign", msg: withoutVERP, want: []Bounce{fromHeaders}},
		{name: "campaign from Message-ID", msg: strings.Replace(withoutVERP, "X-Csrdesk-Campaign: 5\n", "", 1), want: []Bounce{fromHeaders}},
		{name: "recipient from the returned To", msg: dsnMessage(perMessage+"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n", ourHeaders),
			want: []Bounce{hard}},
		{name: "base64 delivery-status", msg: strings.Replace(
			dsnMessage("UmVwb3J0aW5nLU1UQTogZG5zOyBteAoKRmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGlkYUBleGFtcGxl\nLmNvbQpBY3Rpb246IGZhaWxlZApTdGF0dXM6IDUuMS4xCkRpYWdub3N0aWMtQ29kZTogc210cDsg\nNTUwIDUuMS4xIHVua25vd24K", ourHeaders),
			"message/delivery-status\n", "message/delivery-status\nContent-Transfer-Encoding: base64\n", 1),
			want: []Bounce{hard}},
		{name: "mbox From line and CRLF", msg: "From MAILER-DAEMON Mon Jan 13 09:14:03 2025\r\n" +
			strings.ReplaceAll(dsnMessage(failedStatus, ourHeaders), "\n", "\r\n"), want: []Bounce{hard}},
		{name: "returned copy cut short", msg: strings.TrimSuffix(dsnMessage(failedStatus, ourHeaders), "--BB--\n"), want: []Bounce{hard}},
		{name: "longer than 10 MB", msg: longCopy, want: []Bounce{hard}},
		{name: "long diagnostic", msg: dsnMessage(perMessage+"Final-Recipient: rfc822; ida@example.com\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550\t5.1.1 "+
			strings.Repeat("gone ", 100)+"\n", ourHeaders),
			want: []Bounce{{Kind: BounceHard, Recipient: "ida@example.com", Campaign: 5, Subscriber: "abcdefghij", Status: "5.1.1",
				Reason: "smtp; 550 5.1.1 " + strings.Repeat("gone ", 56) + "gon…"}}},
		{name: "not-spam feedback", msg: arfMessage("Feedback-Type: not-spam\n")},
		{name: "fraud feedback", msg: arfMessage("Feedback-Type: fraud\nOriginal-Rcpt-To: <Ida@Example.com>\nOriginal-Mail-From: <bounces+5-abcdefghij@platform.example>\n"),
			want: []Bounce{{Kind: BounceComplaint, Recipient: "ida@example.com", Campaign: 5, Subscriber: "abcdefghij", Reason: "complaint: fraud"}}},
		{name: "plain notice without a status code", msg: plainNotice("MAILER-DAEMON@mx.example.com", "bounces+5-abcdefghij@platform.example", "The mailbox does not exist.\n"),
			want: []Bounce{{Kind: BounceSoft, Campaign: 5, Subscriber: "abcdefghij", Reason: "Undeliverable: News"}}},
		{name: "plain notice with a temporary code", msg: plainNotice("postmaster@mx.example.com", "bounces+5-abcdefghij@platform.example", "452 4.2.2 Mailbox full\n"),
			want: []Bounce{{Kind: BounceSoft, Campaign: 5, Subscriber: "abcdefghij", Status: "4.2.2", Reason: "452 4.2.2 Mailbox full"}}},
		{name: "plain notice not to a VERP address", msg: plainNotice("MAILER-DAEMON@mx.example.com", "news@platform.example", "550 5.1.1 unknown\n"), wantErr: ErrNotBounce},
		{name: "plain notice from a person", msg: plainNotice("ida@example.com", "bounces+5-abcdefghij@platform.example", "550 5.1.1 unknown\n"), wantErr: ErrNotBounce},
		{name: "disposition notification", msg: "From: ida@example.com\nContent-Type: multipart/report; report-type=disposition-notification; boundary=BB\n\n" +
			"--BB\nContent-Type: text/plain\n\nRead.\n--BB\nContent-Type: message/disposition-notification\n\nDisposition: manual-action/MDN-sent-manually; displayed\n--BB--\n",
			wantErr: ErrNotBounce},
		{name: "out of office", msg: "From: ida@example.com\nTo: bounces+5-abcdefghij@platform.example\nSubject: Out of office\n\nBack on Monday.\n", wantErr: ErrNotBounce},
		{name: "empty", msg: "\r\n", wantErr: ErrInvalid, errText: "empty message"},
		{name: "bad header", msg: "From: a@example.com\nthis is no header\n\nbody\n", wantErr: ErrInvalid, errText: "header"},
		{name: "bad content type", msg: "Content-Type: /report\n\nbody\n", wantErr: ErrInvalid, errText: "Content-Type"},
		{name: "report without its delivery-status part", msg: "Content-Type: multipart/report; report-type=delivery-status; boundary=BB\n\n--BB\nContent-Type: text/plain\n\nFailed.\n--BB--\n",
			wantErr: ErrInvalid, errText: "without a message/delivery-status part"},
		{name: "no recipient", msg: dsnMessage(perMessage, ourHeaders), wantErr: ErrInvalid, errText: "names no recipient"},
		{name: "malformed status line", msg: dsnMessage(perMessage+"Final-Recipient: rfc822; ida@example.com\nthis is no field\n", ourHeaders),
			wantErr: ErrInvalid, errText: "delivery-status: malformed MIME header"},
		{name: "feedback without a type", msg: arfMessage("User-Agent: x\n"), wantErr: ErrInvalid, errText: "without Feedback-Type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBounce(strings.NewReader(tc.msg))
			checkBounceErr(t, err, tc.wantErr, tc.errText)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseBounce (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBounceReadError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := ParseBounce(iotest.ErrReader(boom)); !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want the reader's error and not ErrInvalid", err)
	}
}

func arfMessage(fields string) string {
	return "To: fbl@platform.example\nContent-Type: multipart/report; report-type=feedback-report; boundary=BB\n\n" +
		"--BB\nContent-Type: text/plain\n\nA complaint.\n" +
		"--BB\nContent-Type: message/feedback-report\n\n" + fields +
		"--BB\nContent-Type: text/rfc822-headers\n\nTo: undisclosed-recipients:;\n" +
		"--BB--\n"
}

func plainNotice(from, to, body string) string {
	return "From: " + from + "\nTo: " + to + "\nSubject: =?utf-8?q?Undeliverable=3A_News?=\n\n" + body
}

func FuzzParseBounce(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "bounces", "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		f.Add(mustReadBounce(f, filepath.Base(file)))
	}
	f.Add([]byte(dsnMessage(failedStatus, ourHeaders)))
	f.Add([]byte(arfMessage("Feedback-Type: abuse\n")))
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := ParseBounce(bytes.NewReader(msg))
		if err != nil {
			if got != nil {
				t.Errorf("bounces %v with error %v", got, err)
			}
			return
		}
		for _, b := range got {
			switch b.Kind {
			case BounceHard, BounceSoft:
			case BounceComplaint:
				if b.Status != "" {
					t.Errorf("complaint with status %q", b.Status)
				}
			default:
				t.Errorf("kind %q", b.Kind)
			}
			if !utf8.ValidString(b.Reason) || strings.ContainsAny(b.Reason, "\r\n") || utf8.RuneCountInString(b.Reason) > maxReasonLen {
				t.Errorf("reason %q is not one short line", b.Reason)
			}
			if b.Recipient != strings.ToLower(b.Recipient) || !utf8.ValidString(b.Recipient) {
				t.Errorf("recipient %q", b.Recipient)
			}
			if b.Campaign < 0 {
				t.Errorf("campaign %d", b.Campaign)
			}
		}
	})
}

func mustReadBounce(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bounces", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func checkBounceErr(tb testing.TB, err, want error, text string) {
	tb.Helper()
	switch {
	case want == nil && err != nil:
		tb.Fatalf("error %v, want none", err)
	case want != nil && !errors.Is(err, want):
		tb.Fatalf("error %v, want %v", err, want)
	case !strings.Contains(errString(err), text):
		tb.Fatalf("error %v, want it to say %q", err, text)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
