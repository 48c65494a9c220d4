package telegram

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"csrdesk/internal/rdb/rdbtest"
	"github.com/go-redis/redis_rate/v10"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

// fakeAPI is a Telegram Bot API server: it answers getMe, serves queued updates to getUpdates, and records what
// the bot sends. It speaks the Bot API's JSON ({"ok":true,"result":...}) over form-encoded POSTs.
type fakeAPI struct {
	mu        sync.Mutex
	updates   []json.RawMessage
	sent      []url.Values
	sentAt    []time.Time
	callbacks []string
	calls     map[string]int
	tooMany   int // answer this many sendMessage calls with 429 retry_after 1
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	method := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	f.mu.Unlock()
	ok := func(result string) { fmt.Fprintf(w, `{"ok":true,"result":%s}`, result) }
	switch method {
	case "getMe":
		ok(`{"id":42,"is_bot":true,"first_name":"CSR desk","username":"csrdesk_bot"}`)
	case "getUpdates":
		offset, _ := strconv.Atoi(r.Form.Get("offset"))
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			f.mu.Lock()
			var out []json.RawMessage
			for _, u := range f.updates {
				var head struct {
					UpdateID int `json:"update_id"`
				}
				json.Unmarshal(u, &head)
				if head.UpdateID >= offset && len(out) < 100 { // Telegram returns at most 100
					out = append(out, u)
				}
			}
			f.mu.Unlock()
			if len(out) > 0 || time.Now().After(deadline) {
				b, _ := json.Marshal(out)
				if out == nil {
					b = []byte("[]")
				}
				ok(string(b))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "sendMessage":
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.tooMany > 0 {
			f.tooMany--
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}`)
			return
		}
		f.sent = append(f.sent, r.Form)
		f.sentAt = append(f.sentAt, time.Now())
		chat := r.Form.Get("chat_id")
		ok(fmt.Sprintf(`{"message_id":%d,"date":1795766500,"chat":{"id":%s,"type":"private"},"text":"ok"}`, len(f.sent)+1000, chat))
	case "answerCallbackQuery":
		f.mu.Lock()
		f.callbacks = append(f.callbacks, r.Form.Get("callback_query_id"))
		f.mu.Unlock()
		ok("true")
	case "deleteWebhook", "setWebhook":
		ok("true")
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"ok":false,"error_code":404,"description":"Not Found: method %s"}`, method)
	}
}

func (f *fakeAPI) push(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.updates = append(f.updates, data)
	f.mu.Unlock()
}

func (f *fakeAPI) sentTo(chat string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, v := range f.sent {
		if v.Get("chat_id") == chat {
			out = append(out, v)
		}
	}
	return out
}

type fixture struct {
	api    *fakeAPI
	engine *bot.Engine
	bot    *Bot
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	rc := redisSrv.Client(t)
	engine := bottest.Engine(t, rc, bottest.Config())
	f := &fixture{api: &fakeAPI{}, engine: engine}
	srv := httptest.NewServer(f.api)
	t.Cleanup(srv.Close)
	cfg.Token = "123:abc"
	cfg.Endpoint = srv.URL + "/bot%s/%s"
	cfg.PollTimeout = time.Second
	if cfg.PerChat.Rate == 0 {
		cfg.PerChat = redis_rate.PerSecond(100)
	}
	b, err := New(cfg, engine, rc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.outbox.Backoff = 10 * time.Millisecond
	f.bot = b
	return f
}

func (f *fixture) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go f.bot.Run(ctx)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConversationOverTelegram(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	f.run(t)

	f.api.push(t, "private_message.json")
	waitFor(t, "the answer", func() bool { return len(f.api.sentTo("5001")) == 1 })
	answer := f.api.sentTo("5001")[0]
	if answer.Get("parse_mode") != "HTML" || !strings.Contains(answer.Get("text"), "<b>more than 1,000 employees") {
		t.Errorf("answer: %v", answer)
	}
	if kb := answer.Get("reply_markup"); !strings.Contains(kb, `"callback_data":"y:csrd-scope"`) || !strings.Contains(kb, `"callback_data":"h"`) {
		t.Errorf("answer keyboard: %s", kb)
	}

	// "Talk to staff": the callback is answered and a ticket opened.
	f.api.push(t, "callback_query.json")
	waitFor(t, "the handover", func() bool { return len(f.api.sentTo("5001")) == 2 })
	if got := f.api.sentTo("5001")[1].Get("text"); !strings.Contains(got, "ticket #1") {
		t.Errorf("handover: %q", got)
	}
	if len(f.api.callbacks) != 1 || f.api.callbacks[0] != "4382bfdwdsb323b2d9" {
		t.Errorf("callback queries answered: %v", f.api.callbacks)
	}
	tk, _, err := f.engine.Ticket(ctx, 1)
	if err != nil || tk.Channel != ChannelName || tk.Chat != "5001" || tk.Name != "Giulia" || tk.Question != "Does the CSRD apply to our company?" {
		t.Fatalf("ticket: %+v %v", tk, err)
	}

	// Staff answer: the note stays internal, the reply reaches Telegram, resolving asks for a rating.
	f.engine.StaffReply(ctx, 1, bot.Staff{Name: "Bea"}, "note: big customer")
	f.engine.StaffReply(ctx, 1, bot.Staff{Name: "Bea"}, "Hi Giulia, <yes> & welcome")
	f.engine.Resolve(ctx, 1, bot.Staff{Name: "Bea"})
	waitFor(t, "the staff reply and the rating request", func() bool { return len(f.api.sentTo("5001")) == 4 })
	sent := f.api.sentTo("5001")
	// Staff write Markdown: a tag-like <yes> is dropped as raw HTML, & is escaped.
	if got := sent[2].Get("text"); got != "<b>Bea</b> (platform staff): Hi Giulia,  &amp; welcome" {
		t.Errorf("staff reply on Telegram: %q", got)
	}
	for _, v := range sent {
		if strings.Contains(v.Get("text"), "big customer") {
			t.Error("a note reached Telegram")
		}
	}
	if !strings.Contains(sent[3].Get("reply_markup"), `"callback_data":"rate:1:5"`) {
		t.Errorf("rating request: %v", sent[3])
	}
}

func TestRedeliveredUpdateAnsweredOnce(t *testing.T) {
	f := newFixture(t, Config{WebhookSecret: "s3cret"})
	go f.bot.outbox.Run(t.Context())
	body, _ := os.ReadFile("testdata/private_message.json")
	post := func(secret string) int {
		req := httptest.NewRequest("POST", "/telegram/webhook", strings.NewReader(string(body)))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		rec := httptest.NewRecorder()
		f.bot.WebhookHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post("wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", code)
	}
	for range 3 {
		if code := post("s3cret"); code != 200 {
			t.Errorf("webhook: %d", code)
		}
	}
	waitFor(t, "the answer", func() bool { return len(f.api.sentTo("5001")) >= 1 })
	time.Sleep(300 * time.Millisecond) // a second answer, if any, would be out by now
	if n := len(f.api.sentTo("5001")); n != 1 {
		t.Errorf("the same update three times gave %d answers, want 1", n)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	f := newFixture(t, Config{})
	f.api.tooMany = 1
	f.run(t)
	f.api.push(t, "private_message.json")
	waitFor(t, "the answer after the 429", func() bool { return len(f.api.sentTo("5001")) == 1 })
	if f.api.calls["sendMessage"] != 2 {
		t.Errorf("sendMessage called %d times, want 2 (one 429, one success)", f.api.calls["sendMessage"])
	}
}

func TestGroups(t *testing.T) {
	f := newFixture(t, Config{})
	f.run(t)
	f.api.push(t, "group_message.json") // not for the bot
	f.api.push(t, "group_mention.json")
	f.api.push(t, "group_reply.json")
	f.api.push(t, "edited_message.json") // ignored
	waitFor(t, "two answers in the group", func() bool { return len(f.api.sentTo("-100777")) == 2 })
	time.Sleep(200 * time.Millisecond)
	sent := f.api.sentTo("-100777")
	if len(sent) != 2 {
		t.Fatalf("%d messages in the group, want 2", len(sent))
	}
	if !strings.Contains(sent[0].Get("text"), "1.000 Beschäftigten") {
		t.Errorf("answer to the mention: %q", sent[0].Get("text"))
	}
	if len(f.api.sentTo("5001")) != 0 {
		t.Error("an edited message was answered")
	}
}

func TestPacingPerChat(t *testing.T) {
	f := newFixture(t, Config{PerChat: redis_rate.Limit{Rate: 5, Burst: 1, Period: time.Second}})
	go f.bot.outbox.Run(t.Context())
	for i := range 4 {
		f.bot.outbox.Send(t.Context(), "5001", bot.Reply{Text: fmt.Sprint(i)})
	}
	waitFor(t, "four messages", func() bool { return len(f.api.sentTo("5001")) == 4 })
	f.api.mu.Lock()
	defer f.api.mu.Unlock()
	for i := 1; i < len(f.api.sentAt); i++ {
		if gap := f.api.sentAt[i].Sub(f.api.sentAt[i-1]); gap < 150*time.Millisecond {
			t.Errorf("messages %d and %d to one chat %v apart, want at least 200 ms at 5 a second", i-1, i, gap)
		}
		if f.api.sent[i].Get("text") != fmt.Sprint(i) {
			t.Errorf("message %d is %q: out of order", i, f.api.sent[i].Get("text"))
		}
	}
}

// TestRunStopsDuringLongPoll: a shutdown does not wait for Telegram to end a long poll (30 s by default); Run
// returns once ctx ends, its outbox stopped.
func TestRunStopsDuringLongPoll(t *testing.T) {
	polling := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm() // read to the end, so that the server sees the client go away
		switch r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:] {
		case "getMe":
			io.WriteString(w, `{"ok":true,"result":{"id":42,"is_bot":true,"first_name":"CSR desk","username":"csrdesk_bot"}}`)
		case "getUpdates":
			select {
			case polling <- struct{}{}:
			default:
			}
			<-r.Context().Done() // as Telegram does: nothing new, so the answer comes at the poll's timeout
		default:
			io.WriteString(w, `{"ok":true,"result":true}`)
		}
	}))
	defer srv.Close()
	rc := redisSrv.Client(t)
	b, err := New(Config{Token: "1:x", Endpoint: srv.URL + "/bot%s/%s", PollTimeout: 30 * time.Second}, bottest.Engine(t, rc, bottest.Config()), rc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-polling:
	case <-time.After(10 * time.Second):
		t.Fatal("no getUpdates")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still waiting for the long poll 5 s after ctx ended")
	}
}
