package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"csrdesk/internal/smtptest"
)

// TestSubscribersSideCommands: a confirmation mail from the CLI, an event campaign scheduled as a reminder, a
// bounce applied from a folder, then the person's data and their erasure.
func TestSubscribersSideCommands(t *testing.T) {
	sink := smtptest.New(t)
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_SMTP_URL", "smtp://"+sink.Addr+"?tls=none",
		"CSRDESK_PUBLIC_URL", "https://platform.example", "CSRDESK_MAIL_FROM", "news@platform.example")
	if _, _, err := runCmd(t, e, "subscribers", "subscribe", "ana@example.es"); err == nil || !strings.Contains(err.Error(), "no list is open") {
		t.Errorf("subscribe with no public list: %v", err)
	}
	runCmd(t, e, "lists", "create", "news", "--public", "--title", "News and events")
	out, _, err := runCmd(t, e, "subscribers", "subscribe", "ana@example.es", "--lang", "es", "--name", "Ana")
	if err != nil || !strings.Contains(out, "confirmation mail sent to ana@example.es") || sink.Got("ana@example.es") != 1 || !strings.Contains(sink.Message("ana@example.es"), "Confirme") {
		t.Fatalf("subscribe: %v %q", err, out)
	}

	// An import without --confirmed, then the confirmation mails for it.
	csv := filepath.Join(t.TempDir(), "visitors.csv")
	os.WriteFile(csv, []byte("email,language\nvisitor@example.de,de\n"), 0o644)
	if out, _, err := runCmd(t, e, "subscribers", "import", csv, "--list", "news"); err != nil || !strings.Contains(out, "subscribers invite --list news") {
		t.Errorf("import: %v %q", err, out)
	}
	out, _, err = runCmd(t, e, "subscribers", "invite", "--list", "news")
	if err != nil || !strings.Contains(out, "news: 1 confirmation mails sent, 1 members asked within the last week") || sink.Got("visitor@example.de") != 1 {
		t.Errorf("invite: %v %q", err, out)
	}

	out, _, err = runCmd(t, e, "events", "create", "--title", "CSR day", "--start", time.Now().Add(72*time.Hour).Format("2006-01-02 15:04"),
		"--end", time.Now().Add(75*time.Hour).Format("2006-01-02 15:04"), "--tz", "Europe/Rome", "--place", "Fiera Milano")
	if err != nil {
		t.Fatalf("events create: %v", err)
	}
	event := strings.TrimSpace(out)
	body := filepath.Join(t.TempDir(), "reminder.md")
	os.WriteFile(body, []byte("See you soon, {{.Subscriber.Name}}!"), 0o644)
	out, _, err = runCmd(t, e, "campaign", "create", "--name", "reminder", "--subject", "Reminder", "--body-file", body, "--list", "news",
		"--event", event, "--send-before", "24h")
	if err != nil {
		t.Fatalf("reminder campaign: %v", err)
	}
	id := strings.TrimSpace(out)
	if st := status(t, e, id); st["state"] != "draft" {
		t.Errorf("reminder: %v", st)
	}
	if _, _, err := runCmd(t, e, "campaign", "create", "--name", "late", "--subject", "x", "--body-file", body, "--list", "news",
		"--event", event, "--send-before", "96h"); err == nil || !strings.Contains(err.Error(), "already past") {
		t.Errorf("a reminder before now: %v", err)
	}
	// The event moves: the scheduled reminder moves with it. Nobody has been sent the event, so there is nobody
	// to notify.
	runCmd(t, e, "campaign", "start", id)
	out, _, err = runCmd(t, e, "events", "update", event, "--start", time.Now().Add(96*time.Hour).Format("2006-01-02 15:04"), "--notify")
	if err != nil || !strings.Contains(out, "reminder: campaign "+id+" now goes at ") || strings.Contains(out, "update:") {
		t.Errorf("events update: %v\n%s", err, out)
	}

	// A bounce that did not come through our return path changes nothing, but is reported and moved; an
	// ordinary mail stays.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "1.eml"), []byte("From: MAILER-DAEMON@mx.example\r\nTo: bounces@platform.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"+
		"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "2.eml"), []byte("From: a@example.com\r\nSubject: Thanks\r\n\r\nSee you."), 0o644)
	out, _, err = runCmd(t, e, "bounces", dir)
	if err != nil || !strings.Contains(out, `"nobody@example.net" without our return path: ignored`) || !strings.Contains(out, "2.eml: not a bounce") {
		t.Errorf("bounces: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "processed", "1.eml")); err != nil {
		t.Errorf("the applied report was not moved: %v", err)
	}

	out, _, err = runCmd(t, e, "subscribers", "export", "ana@example.es")
	var data struct {
		Subscriber struct{ Status string }
		Consent    []struct{ Action, Via string }
	}
	if err != nil || json.Unmarshal([]byte(out), &data) != nil || data.Subscriber.Status != "unconfirmed" || len(data.Consent) != 1 || data.Consent[0].Via != "staff" {
		t.Errorf("export: %v\n%s", err, out)
	}
	if out, _, err := runCmd(t, e, "subscribers", "delete", "ana@example.es"); err != nil || !strings.Contains(out, "erased") {
		t.Errorf("delete: %v %q", err, out)
	}
	if _, _, err := runCmd(t, e, "subscribers", "export", "ana@example.es"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("export after delete: %v", err)
	}
}

// Mail links signed with an empty key could be forged: nothing that sends mail starts without the secret.
func TestNoMailWithoutSecret(t *testing.T) {
	e := env("CSRDESK_SECRET", "", "CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", "127.0.0.1:0")
	for _, args := range [][]string{{"serve"}, {"worker"}, {"subscribers", "subscribe", "a@example.com"}} {
		if _, _, err := runCmd(t, e, args...); err == nil || !strings.Contains(err.Error(), "CSRDESK_SECRET is required") {
			t.Errorf("%v without a secret: %v", args, err)
		}
	}
}
