package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// platforms fakes the Telegram Bot API (under /tg/) and the Slack Web API (under /slack/api/), speaking their
// JSON, and records what csrdesk sends to each. It can be told to throttle and fail as the real ones do.
type platforms struct {
	mu        sync.Mutex
	updates   []string // Telegram updates, in order; update_id is the index + 1
	telegram  []url.Values
	slack     []url.Values
	slackEdit []url.Values
	// While set, every tg429-th sendMessage is answered 429 with retry_after 1, and every slack5xx-th
	// chat.postMessage 503; refused counts those answers.
	tg429, slack5xx, calls, refused int
}

// fail reports whether this call is one the fake refuses, every nth while n > 0. p.mu is held.
func (p *platforms) fail(n int) bool {
	p.calls++
	if n > 0 && p.calls%n == 0 {
		p.refused++
		return true
	}
	return false
}

func (p *platforms) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.mu.Lock()
	defer p.mu.Unlock()
	method := path.Base(r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/tg/") {
		switch method {
		case "getMe":
			io.WriteString(w, `{"ok":true,"result":{"id":42,"is_bot":true,"first_name":"CSR desk","username":"csrdesk_bot"}}`)
		case "getUpdates":
			offset, _ := strconv.Atoi(r.Form.Get("offset"))
			var out []string
			for i := max(offset-1, 0); i < len(p.updates); i++ {
				out = append(out, p.updates[i])
			}
			if len(out) == 0 {
				p.mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				p.mu.Lock()
			}
			fmt.Fprintf(w, `{"ok":true,"result":[%s]}`, strings.Join(out, ","))
		case "sendMessage":
			if p.fail(p.tg429) {
				w.WriteHeader(http.StatusTooManyRequests)
				io.WriteString(w, `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}`)
				return
			}
			p.telegram = append(p.telegram, r.Form)
			io.WriteString(w, `{"ok":true,"result":{"message_id":9,"date":1795766401,"chat":{"id":5001,"type":"private"}}}`)
		default:
			io.WriteString(w, `{"ok":true,"result":true}`)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch method {
	case "auth.test":
		io.WriteString(w, `{"ok":true,"user_id":"UBOT","bot_id":"BBOT","team_id":"T1"}`)
	case "chat.postMessage":
		if p.fail(p.slack5xx) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		p.slack = append(p.slack, r.Form)
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1795766400.%06d"}`, r.Form.Get("channel"), len(p.slack))
	case "chat.update":
		p.slackEdit = append(p.slackEdit, r.Form)
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q}`, r.Form.Get("channel"), r.Form.Get("ts"))
	case "users.info":
		io.WriteString(w, `{"ok":true,"user":{"id":"USTAFF","name":"bea","profile":{"display_name":"Bea"}}}`)
	default:
		io.WriteString(w, `{"ok":false,"error":"unknown_method"}`)
	}
}

func (p *platforms) telegramUpdate(body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updates = append(p.updates, fmt.Sprintf(`{"update_id":%d,%s}`, len(p.updates)+1, body))
}

func (p *platforms) sent() (tg, sl []url.Values) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.telegram...), append([]url.Values(nil), p.slack...)
}

// waitFor waits up to within until cond holds for what csrdesk has sent to Telegram and Slack, or fails the test
// saying what it waited for and what was sent (the messages themselves when there are few).
func (p *platforms) waitFor(t *testing.T, what string, within time.Duration, cond func(tg, sl []url.Values) bool) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		tg, sl := p.sent()
		if cond(tg, sl) {
			return
		}
		if time.Now().After(deadline) {
			if len(tg)+len(sl) <= 10 {
				t.Fatalf("timed out waiting for %s; telegram got %v; slack got %v", what, tg, sl)
			}
			t.Fatalf("timed out waiting for %s; telegram got %d messages, slack %d", what, len(tg), len(sl))
		}
	}
}

// slackSignature signs a request body as Slack does.
func slackSignature(secret, ts, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

func signed(t *testing.T, u, contentType, body, secret string) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", slackSignature(secret, ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d", u, resp.StatusCode)
	}
}

// TestTelegramUserSlackStaff is the help desk across platforms: a Telegram user asks, is answered, asks for a
// person; the ticket appears in the Slack staff channel; a reply in its thread reaches the Telegram user, a note
// does not; Resolve from the card asks the user for a rating.
func TestTelegramUserSlackStaff(t *testing.T) {
	p := &platforms{}
	fake := httptest.NewServer(p)
	defer fake.Close()
	const secret = "slack-signing-secret"
	addr := freeAddr(t)
	startServe(t, env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr, "CSRDESK_OFFICE_HOURS", "always",
		"TELEGRAM_BOT_TOKEN", "1:x", "TELEGRAM_API_ENDPOINT", fake.URL+"/tg/bot%s/%s",
		"SLACK_BOT_TOKEN", "xoxb-1", "SLACK_SIGNING_SECRET", secret, "SLACK_API_URL", fake.URL+"/slack/api/", "SLACK_STAFF_CHANNEL", "CSTAFF"), addr)
	base := "http://" + addr
	wait := func(what string, cond func(tg, sl []url.Values) bool) {
		t.Helper()
		p.waitFor(t, what, 15*time.Second, cond)
	}
	from := `"from":{"id":5001,"is_bot":false,"first_name":"Giulia","language_code":"it"}`
	chat := `"chat":{"id":5001,"type":"private"}`

	p.telegramUpdate(`"message":{"message_id":1,` + from + `,` + chat + `,"date":1795766400,"text":"Il CBAM riguarda anche le macchine utensili dal 2028?"}`)
	wait("the answer on Telegram", func(tg, _ []url.Values) bool { return len(tg) == 1 })
	tg, _ := p.sent()
	if !strings.Contains(tg[0].Get("reply_markup"), `"callback_data":"h"`) || !strings.Contains(tg[0].Get("text"), "CBAM") {
		t.Errorf("answer: %v", tg[0])
	}
	p.telegramUpdate(`"callback_query":{"id":"cb1",` + from + `,"message":{"message_id":2,"date":1795766401,` + chat + `,"text":"..."},"chat_instance":"1","data":"h"}`)
	wait("the card in Slack", func(tg, sl []url.Values) bool { return len(tg) == 2 && len(sl) == 1 })
	tg, sl := p.sent()
	if !strings.Contains(tg[1].Get("text"), "ticket #1") {
		t.Errorf("handover on Telegram: %q", tg[1].Get("text"))
	}
	if card := sl[0]; card.Get("channel") != "CSTAFF" || !strings.Contains(card.Get("text"), "Ticket #1 from Giulia via telegram (it): Il CBAM riguarda") {
		t.Errorf("card: %v", card)
	}
	cardTS := "1795766400.000001"

	threadReply := func(id, text string) string {
		return `{"type":"event_callback","event_id":"` + id + `","event":{"type":"message","channel":"CSTAFF","channel_type":"channel","user":"USTAFF","text":"` + text + `","ts":"1795766500.1","thread_ts":"` + cardTS + `"}}`
	}
	signed(t, base+"/slack/events", "application/json", threadReply("Ev1", "note: she imports castings"), secret)
	signed(t, base+"/slack/events", "application/json", threadReply("Ev2", "Ciao Giulia, per ora è solo una proposta."), secret)
	signed(t, base+"/slack/events", "application/json", threadReply("Ev2", "Ciao Giulia, per ora è solo una proposta."), secret) // Slack's retry
	wait("the staff reply on Telegram", func(tg, _ []url.Values) bool { return len(tg) == 3 })

	press := `{"type":"block_actions","user":{"id":"USTAFF","name":"bea"},"channel":{"id":"CSTAFF"},"container":{"type":"message","message_ts":"` + cardTS + `","channel_id":"CSTAFF"},"message":{"ts":"` + cardTS + `"},"actions":[{"action_id":"ticket:resolve","block_id":"ticket","value":"1","type":"button","action_ts":"1"}]}`
	signed(t, base+"/slack/interactions", "application/x-www-form-urlencoded", "payload="+url.QueryEscape(press), secret)
	wait("the rating request on Telegram", func(tg, _ []url.Values) bool { return len(tg) == 4 })
	time.Sleep(300 * time.Millisecond) // anything more would have arrived by now
	tg, _ = p.sent()
	if len(tg) != 4 {
		t.Fatalf("Telegram got %d messages, want 4 (answer, handover, one staff reply, rating)", len(tg))
	}
	if got := tg[2].Get("text"); got != "<b>Bea</b> (staff della piattaforma): Ciao Giulia, per ora è solo una proposta." {
		t.Errorf("staff reply on Telegram: %q", got)
	}
	if !strings.Contains(tg[3].Get("reply_markup"), `"callback_data":"rate:1:5"`) {
		t.Errorf("rating request: %v", tg[3])
	}
	for _, m := range tg {
		if strings.Contains(m.Get("text"), "castings") {
			t.Error("a note reached the Telegram user")
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`csrdesk_outbox_pending{channel="telegram"} 0`, `csrdesk_outbox_pending{channel="slack"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
