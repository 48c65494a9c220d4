package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"csrdesk/bot"
	"csrdesk/bot/bottest"
	"csrdesk/faq"
	"csrdesk/internal/rdb/rdbtest"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

// fakeAPI is the Slack Web API as far as csrdesk uses it: form posts with a bearer token, JSON answers.
type fakeAPI struct {
	mu      sync.Mutex
	posts   []url.Values // chat.postMessage
	updates []url.Values // chat.update
	calls   map[string]int
	tooMany int // answer this many chat.postMessage calls with 429 and Retry-After: 1
	failing int // and then this many with 500
	ts      int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	w.Header().Set("Content-Type", "application/json")
	switch method {
	case "auth.test":
		fmt.Fprint(w, `{"ok":true,"url":"https://platform.slack.com/","team":"Platform","user":"csrdesk","team_id":"T1","user_id":"UBOT","bot_id":"BBOT"}`)
	case "chat.postMessage":
		if f.tooMany > 0 {
			f.tooMany--
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
			return
		}
		if f.failing > 0 {
			f.failing--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.posts = append(f.posts, r.Form)
		f.ts++
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1795766400.%06d","message":{"type":"message","text":"x"}}`, r.Form.Get("channel"), f.ts)
	case "chat.update":
		f.updates = append(f.updates, r.Form)
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q,"text":"x"}`, r.Form.Get("channel"), r.Form.Get("ts"))
	case "users.info":
		fmt.Fprintf(w, `{"ok":true,"user":{"id":%q,"name":"bea","real_name":"Bea Staff","profile":{"real_name":"Bea Staff","display_name":"Bea"}}}`, r.Form.Get("user"))
	default:
		fmt.Fprintf(w, `{"ok":false,"error":"unknown_method"}`)
	}
}

func (f *fakeAPI) postsTo(channel string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, p := range f.posts {
		if p.Get("channel") == channel {
			out = append(out, p)
		}
	}
	return out
}

// recorder is a chat channel of the engine that keeps what it was sent (the person's side of a ticket).
type recorder struct {
	mu   sync.Mutex
	sent []bot.Reply
}

func (r *recorder) Send(_ context.Context, _ string, reply bot.Reply) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, reply)
	return nil
}

func (r *recorder) all() []bot.Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bot.Reply(nil), r.sent...)
}

const secret = "8f742231b10e8888abcd99yyyzzz85a5"

type fixture struct {
	api    *fakeAPI
	engine *bot.Engine
	slack  *Slack
	person *recorder
	srv    *httptest.Server
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	rc := redisSrv.Client(t)
	bc := bottest.Config()
	bc.RemindAfter = time.Millisecond
	engine := bottest.Engine(t, rc, bc)
	matcher := bottest.Matcher(t)
	m := func() *faq.Matcher { return matcher }
	f := &fixture{api: &fakeAPI{}, engine: engine, person: &recorder{}}
	engine.Register("test", f.person)
	api := httptest.NewServer(f.api)
	t.Cleanup(api.Close)
	s, err := New(Config{BotToken: "xoxb-1", SigningSecret: secret, APIURL: api.URL + "/api/", StaffChannel: "CSTAFF"}, engine, m, rc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.outbox.Backoff = 10 * time.Millisecond
	f.slack = s
	mux := http.NewServeMux()
	mux.Handle("POST /slack/events", s.EventsHandler())
	mux.Handle("POST /slack/interactions", s.InteractionsHandler())
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	waitFor(t, "the console to follow events", func() bool {
		groups, _ := rc.XInfoGroups(ctx, bot.EventsStream).Result()
		return len(groups) == 1
	})
	return f
}

// send posts a request signed as Slack signs them.
func (f *fixture) send(t *testing.T, path, contentType, body string, header map[string]string) int {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (f *fixture) event(t *testing.T, body string, header map[string]string) {
	t.Helper()
	if code := f.send(t, "/slack/events", "application/json", body, header); code != 200 {
		t.Fatalf("event: %d", code)
	}
}

func (f *fixture) press(t *testing.T, actionID, value, ts string) {
	t.Helper()
	data, _ := os.ReadFile("testdata/interaction_claim.json")
	payload := fmt.Sprintf(string(data), ts, ts, actionID, value)
	if code := f.send(t, "/slack/interactions", "application/x-www-form-urlencoded", "payload="+url.QueryEscape(payload), nil); code != 200 {
		t.Fatalf("interaction: %d", code)
	}
}

func threadReply(t testing.TB, eventID, threadTS, text string) string {
	data, _ := os.ReadFile("testdata/event_thread_reply.json")
	quoted, _ := json.Marshal(text)
	return fmt.Sprintf(string(data), strings.Trim(string(quoted), `"`), threadTS, eventID)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStaffConsole(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// A person on another channel asks for a human.
	f.engine.Handle(ctx, bot.Message{Channel: "test", Chat: "c1", User: "u1", Name: "Ada", Text: "Do we need CBAM reports for castings from India?"})
	f.engine.Handle(ctx, bot.Message{Channel: "test", Chat: "c1", User: "u1", Name: "Ada", Text: "/human"})
	waitFor(t, "the ticket card", func() bool { return len(f.api.postsTo("CSTAFF")) == 1 })
	card := f.api.postsTo("CSTAFF")[0]
	for _, want := range []string{"Ticket #1", "Ada via test", "castings from India", `"action_id":"ticket:claim"`, `"action_id":"ticket:resolve"`, "`cbam`"} {
		if !strings.Contains(card.Get("blocks")+card.Get("text"), want) {
			t.Errorf("card lacks %q: %s", want, card.Get("blocks"))
		}
	}
	cardTS := "1795766400.000001"

	// The person's next message appears in the thread.
	f.engine.Handle(ctx, bot.Message{Channel: "test", Chat: "c1", User: "u1", Name: "Ada", Text: "hello? <b>anyone</b>"})
	waitFor(t, "the message in the thread", func() bool { return len(f.api.postsTo("CSTAFF")) == 2 })
	if p := f.api.postsTo("CSTAFF")[1]; p.Get("thread_ts") != cardTS || p.Get("text") != "*Ada*: hello? &lt;b&gt;anyone&lt;/b&gt;" {
		t.Errorf("thread message: %v", p)
	}

	// An unclaimed ticket's reminder goes to its thread.
	if n, err := f.engine.RemindUnclaimed(ctx); n != 1 || err != nil {
		t.Fatalf("reminders: %d, %v", n, err)
	}
	waitFor(t, "the reminder in the thread", func() bool { return len(f.api.postsTo("CSTAFF")) == 3 })
	if p := f.api.postsTo("CSTAFF")[2]; p.Get("thread_ts") != cardTS || !strings.Contains(p.Get("text"), "still unclaimed") {
		t.Errorf("reminder: %v", p)
	}

	// Claim from the card: the Slack user is the assignee and the card says so.
	f.press(t, "ticket:claim", "1", cardTS)
	waitFor(t, "the card update", func() bool { f.api.mu.Lock(); defer f.api.mu.Unlock(); return len(f.api.updates) == 1 })
	if tk, _, _ := f.engine.Ticket(ctx, 1); tk.State != bot.StateClaimed || tk.Assignee != "Bea" {
		t.Errorf("after Claim: %+v", tk)
	}
	if u := f.api.updates[0]; u.Get("ts") != cardTS || !strings.Contains(u.Get("blocks"), "claimed by Bea") || strings.Contains(u.Get("blocks"), "ticket:claim") {
		t.Errorf("card after Claim: %v", u)
	}

	// A reply in the thread reaches the person, once, however often Slack sends it; a note does not.
	reply := threadReply(t, "Ev1", cardTS, "Yes: castings are in scope if over 50 t a year & more.")
	f.event(t, reply, nil)
	f.event(t, reply, map[string]string{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
	f.event(t, threadReply(t, "Ev2", cardTS, "note: check their import volume"), nil)
	waitFor(t, "the staff reply", func() bool { return len(f.person.all()) >= 3 })
	time.Sleep(200 * time.Millisecond)
	var got []string
	for _, r := range f.person.all() {
		if r.From == "staff" {
			got = append(got, r.Text)
		}
	}
	if len(got) != 1 || got[0] != "**Bea** (platform staff): Yes: castings are in scope if over 50 t a year & more." {
		t.Errorf("what reached the person from staff: %q", got)
	}

	// A reply from the web inbox shows in the thread; Resolve from the card asks the person for a rating.
	f.engine.StaffReply(ctx, 1, bot.Staff{Name: "Cleo", Via: "inbox"}, "I will send you the guidance.")
	waitFor(t, "the inbox reply in the thread", func() bool {
		for _, p := range f.api.postsTo("CSTAFF") {
			if p.Get("text") == "*Cleo* (staff inbox): I will send you the guidance." {
				return true
			}
		}
		return false
	})
	f.press(t, "ticket:resolve", "1", cardTS)
	waitFor(t, "the rating request", func() bool {
		all := f.person.all()
		return len(all) > 0 && len(all[len(all)-1].Buttons) == 1 && len(all[len(all)-1].Buttons[0]) == 5
	})
	waitFor(t, "the resolved card", func() bool { f.api.mu.Lock(); defer f.api.mu.Unlock(); return len(f.api.updates) == 2 })
	if u := f.api.updates[1]; !strings.Contains(u.Get("blocks"), "resolved by Bea") || strings.Contains(u.Get("blocks"), "ticket:resolve") {
		t.Errorf("card after Resolve: %v", u.Get("blocks"))
	}
	for _, p := range f.api.postsTo("CSTAFF") {
		if strings.Contains(p.Get("text"), "check their import volume") {
			t.Error("a note written in Slack was echoed back to Slack")
		}
	}
}

func TestDirectMessagesAndButtons(t *testing.T) {
	f := newFixture(t)
	f.api.tooMany, f.api.failing = 1, 1 // Slack throttles, then fails, then takes it
	dm, _ := os.ReadFile("testdata/event_dm.json")
	f.event(t, string(dm), nil)
	waitFor(t, "the answer in the DM", func() bool { return len(f.api.postsTo("DPERSON")) == 1 })
	p := f.api.postsTo("DPERSON")[0]
	if !strings.Contains(p.Get("blocks"), "*more than 1,000 employees and more than €450 million net turnover*") || !strings.Contains(p.Get("blocks"), `"value":"y:csrd-scope"`) {
		t.Errorf("DM answer: %s", p.Get("blocks"))
	}
	if f.api.calls["chat.postMessage"] != 3 {
		t.Errorf("chat.postMessage called %d times, want 3 (429, 500, success)", f.api.calls["chat.postMessage"])
	}
	// The person presses "this helped".
	payload := `{"type":"block_actions","user":{"id":"UPERSON","name":"jo"},"channel":{"id":"DPERSON"},"container":{"type":"message","channel_id":"DPERSON"},"actions":[{"action_id":"csrdesk:0","block_id":"Xy1","value":"y:csrd-scope","type":"button","action_ts":"1795766800.1"}]}`
	if code := f.send(t, "/slack/interactions", "application/x-www-form-urlencoded", "payload="+url.QueryEscape(payload), nil); code != 200 {
		t.Fatalf("button: %d", code)
	}
	waitFor(t, "the thanks", func() bool { return len(f.api.postsTo("DPERSON")) == 2 })
	if got := f.api.postsTo("DPERSON")[1].Get("text"); !strings.Contains(got, "Glad it helped") {
		t.Errorf("after the button: %q", got)
	}
	// A mention in a channel is answered there, without the mention.
	mention, _ := os.ReadFile("testdata/event_mention.json")
	f.event(t, string(mention), nil)
	waitFor(t, "the answer to the mention", func() bool { return len(f.api.postsTo("CSUPPLIERS")) == 1 })
	if got := f.api.postsTo("CSUPPLIERS")[0].Get("text"); !strings.Contains(got, "VSME") {
		t.Errorf("answer to the mention: %q", got)
	}
}

func TestRequestsMustBeSigned(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("POST", f.srv.URL+"/slack/events", strings.NewReader(`{"type":"url_verification","challenge":"abc"}`))
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Slack-Signature", "v0=0000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned event: %d, want 401", resp.StatusCode)
	}
	if code := f.send(t, "/slack/events", "application/json", `{"type":"url_verification","challenge":"abc"}`, nil); code != 200 {
		t.Errorf("URL verification: %d", code)
	}
}

func TestMrkdwn(t *testing.T) {
	for md, want := range map[string]string{
		"a **bold** _x_ and [EU](https://eur-lex.europa.eu/?a=1&b=2)": "a *bold* _x_ and <https://eur-lex.europa.eu/?a=1&amp;b=2|EU>",
		"- one\n- two":    "• one\n• two",
		"1 < 2 & 3 > 2":   "1 &lt; 2 &amp; 3 &gt; 2",
		"`code` <script>": "`code`",
	} {
		if got := toMrkdwn(md); got != want {
			t.Errorf("toMrkdwn(%q) = %q, want %q", md, got, want)
		}
	}
}
