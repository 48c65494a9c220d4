package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb/rdbtest"
	"csrdesk/internal/smtptest"
)

// TestWholeProductOnOneRedis runs every feature that shares a Redis in production on one database, through the
// binary: a calendar event before any ticket and another after, tickets from Telegram and the web chat worked in
// the Slack staff channel, a campaign inviting to the event, a subscription confirmed by its link. Then every key
// in Redis must be one the keyspace declares, of its declared type. The ticket stream and the calendar once
// shared a key, and this is how it would have been seen.
func TestWholeProductOnOneRedis(t *testing.T) {
	bin := buildBinary(t)
	db := redisSrv.DB(t)
	redisURL := redisSrv.URL(db)
	rc := redis.NewClient(&redis.Options{Addr: redisSrv.Addr, DB: db})
	defer rc.Close()
	p := &platforms{}
	fake := httptest.NewServer(p)
	defer fake.Close()
	sink := smtptest.New(t)
	const secret = "slack-signing-secret"
	addr := freeAddr(t)
	base := "http://" + addr
	e := env("CSRDESK_REDIS_URL", redisURL, "CSRDESK_PUBLIC_URL", base)

	// A calendar event before the help desk has any ticket.
	out, err := runEvents(t, e, "create", "--title", "CSR day at EMO", "--start", "2027-09-14 09:00", "--end", "2027-09-14 17:00", "--tz", "Europe/Berlin")
	if err != nil {
		t.Fatalf("events create before any ticket: %v", err)
	}
	event := strings.TrimSpace(out)

	(&procs{t: t, bin: bin}).serve(addr, "CSRDESK_REDIS_URL="+redisURL, "CSRDESK_PUBLIC_URL="+base, "CSRDESK_LOG_LEVEL=info",
		"CSRDESK_OFFICE_HOURS=always", "CSRDESK_SMTP_URL=smtp://"+sink.Addr+"?tls=none",
		"TELEGRAM_BOT_TOKEN=1:x", "TELEGRAM_API_ENDPOINT="+fake.URL+"/tg/bot%s/%s",
		"SLACK_BOT_TOKEN=xoxb-1", "SLACK_SIGNING_SECRET="+secret, "SLACK_API_URL="+fake.URL+"/slack/api/", "SLACK_STAFF_CHANNEL=CSTAFF")
	wait := func(what string, cond func(tg, sl []url.Values) bool) {
		t.Helper()
		p.waitFor(t, what, 15*time.Second, cond)
	}

	// A Telegram user is handed over; the card appears in Slack, a reply in its thread reaches them.
	from := `"from":{"id":5001,"is_bot":false,"first_name":"Giulia","language_code":"it"}`
	chat := `"chat":{"id":5001,"type":"private"}`
	p.telegramUpdate(`"message":{"message_id":1,` + from + `,` + chat + `,"date":1795766400,"text":"/human Il CBAM riguarda le macchine utensili?"}`)
	wait("the Telegram ticket's card", func(tg, sl []url.Values) bool { return len(tg) == 1 && len(sl) == 1 })
	if _, sl := p.sent(); !strings.Contains(sl[0].Get("text"), "Ticket #1 from Giulia via telegram") {
		t.Fatalf("card: %v", sl[0])
	}
	threadReply := func(id, ts, text string) string {
		return `{"type":"event_callback","event_id":"` + id + `","event":{"type":"message","channel":"CSTAFF","channel_type":"channel","user":"USTAFF","text":"` + text + `","ts":"1795766500.1","thread_ts":"` + ts + `"}}`
	}
	signed(t, base+"/slack/events", "application/json", threadReply("Ev1", "1795766400.000001", "Ciao Giulia, è una proposta."), secret)
	wait("the staff reply on Telegram", func(tg, _ []url.Values) bool { return len(tg) == 2 })

	// A web chat is handed over too; its card is the next Slack post, and a staff reply reaches the web chat.
	web := followChat(t, base)
	web.say(t, "/human Which ESRS apply to us?")
	wait("the web ticket's card", func(_, sl []url.Values) bool {
		return len(sl) >= 2 && strings.Contains(sl[len(sl)-1].Get("text")+sl[1].Get("text"), "Ticket #2")
	})
	var webCard string
	_, sl := p.sent()
	for i, m := range sl {
		if strings.Contains(m.Get("text"), "Ticket #2 ") {
			webCard = fmt.Sprintf("1795766400.%06d", i+1)
		}
	}
	signed(t, base+"/slack/events", "application/json", threadReply("Ev2", webCard, "Hello, ESRS 1 and 2 first."), secret)
	for deadline := time.Now().Add(15 * time.Second); !web.has("ESRS 1 and 2 first"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the staff reply did not reach the web chat; it shows:\n%s", strings.Join(web.seen(), "\n"))
		}
	}

	// Another calendar event, now that tickets exist.
	if _, err := runEvents(t, e, "create", "--title", "Supplier day", "--start", "2027-10-01 09:00", "--end", "2027-10-01 12:00", "--tz", "Europe/Rome"); err != nil {
		t.Errorf("events create after tickets: %v", err)
	}

	// A campaign inviting to the first event, sent by serve's own worker.
	importPeople(t, e, 40)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "emo.md"), []byte("Dear {{.Subscriber.Name}}, join us."), 0o644)
	out, _, err = runCmd(t, e, "campaign", "create", "--name", "EMO", "--subject", "CSR day", "--body-file", filepath.Join(dir, "emo.md"),
		"--list", "all", "--from", "news@platform.example", "--event", event)
	if err != nil {
		t.Fatalf("campaign create: %v", err)
	}
	id := strings.TrimSpace(out)
	if _, _, err := runCmd(t, e, "campaign", "start", id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); status(t, e, id)["state"] != "finished"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("campaign: %v", status(t, e, id))
		}
	}
	if recipients, messages, dups := sink.Counts(); recipients != 40 || messages != 40 || len(dups) != 0 {
		t.Errorf("campaign: %d recipients, %d messages, %v twice", recipients, messages, dups)
	}
	if m := sink.Message("p00007@example.com"); !strings.Contains(m, "text/calendar") {
		t.Error("the campaign mail has no invitation")
	}

	// A subscription through the public form, confirmed by the link in its mail.
	runCmd(t, e, "lists", "create", "news", "--public", "--title", "News")
	csrf := strings.Repeat("c", 32)
	form := url.Values{"email": {"lea@example.fr"}, "language": {"fr"}, "consent": {"yes"}, "list": {"news"}, "csrf": {csrf}}
	postForm(t, base+"/subscribe", form, csrf)
	var link string
	for deadline := time.Now().Add(10 * time.Second); link == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		link = regexp.MustCompile(`/confirm/[A-Za-z0-9_.\-]+`).FindString(strings.ReplaceAll(sink.Message("lea@example.fr"), "=\r\n", ""))
	}
	if link == "" {
		t.Fatal("no confirmation mail")
	}
	postForm(t, base+link, url.Values{"csrf": {csrf}}, csrf)
	if st := rc.HGet(context.Background(), "csrdesk:{subs}:subscriber:lea@example.fr", "status").Val(); st != "active" {
		t.Errorf("after the confirmation link the subscriber is %q", st)
	}

	// Everything on one Redis, every key declared and of its type.
	owners := rdbtest.CheckKeyspace(t, rc)
	for _, o := range []string{"internal/rdb", "bot", "bot/telegram", "bot/slack", "bot/web", "campaigns"} {
		if owners[o] == 0 {
			t.Errorf("no key of %s in Redis: %v", o, owners)
		}
	}
	t.Logf("keys by owner: %v", owners)
}

func postForm(t *testing.T, u string, form url.Values, csrf string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "csrdesk_pcsrf", Value: csrf})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", u, resp.Status)
	}
}
