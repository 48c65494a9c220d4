package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"csrdesk/bot"
	"csrdesk/bot/bottest"
	"csrdesk/internal/rdb/rdbtest"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

type fixture struct {
	srv    *httptest.Server
	engine *bot.Engine
	web    *Server
}

func newFixture(tb testing.TB, cfg Config) *fixture {
	tb.Helper()
	rc := redisSrv.Client(tb)
	engine := bottest.Engine(tb, rc, bottest.Config())
	if cfg.StreamWait == 0 {
		cfg.StreamWait = 2 * time.Second
	}
	if cfg.Secret == nil {
		cfg.Secret = []byte("test secret")
	}
	w, err := New(cfg, engine, rc, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	w.Register(mux)
	ctx, cancel := context.WithCancel(context.Background())
	go w.Run(ctx)
	srv := httptest.NewServer(mux)
	tb.Cleanup(func() { cancel(); srv.Close() })
	return &fixture{srv: srv, engine: engine, web: w}
}

func (f *fixture) post(t testing.TB, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(f.srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) session(t testing.TB) string {
	t.Helper()
	code, body := f.post(t, "/api/chat/session", "")
	var s struct{ Chat string }
	if json.Unmarshal([]byte(body), &s); code != 201 || !chatID.MatchString(s.Chat) {
		t.Fatalf("session: %d %s", code, body)
	}
	return s.Chat
}

type event struct {
	id   string
	item item
}

// stream opens a chat's event stream and returns a channel of its events.
func (f *fixture) stream(t testing.TB, chat, lastID string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/chat/events?chat="+chat, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan event, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				json.Unmarshal([]byte(line[6:]), &ev.item)
			case line == "" && ev.id != "":
				ch <- ev
				ev = event{}
			}
		}
	}()
	return ch
}

func next(t testing.TB, ch <-chan event) event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return event{}
}

func TestChatAPI(t *testing.T) {
	f := newFixture(t, Config{})
	chat := f.session(t)
	events := f.stream(t, chat, "")
	if code, body := f.post(t, "/api/chat/messages", `{"chat":"`+chat+`","text":"Gilt die CSRD für unser Unternehmen?","lang":"de-DE"}`); code != 202 {
		t.Fatalf("post: %d %s", code, body)
	}
	first := next(t, events)
	if first.item.From != "user" || first.item.Text != "Gilt die CSRD für unser Unternehmen?" {
		t.Errorf("first event: %+v", first.item)
	}
	answer := next(t, events)
	if answer.item.From != "bot" || !strings.Contains(answer.item.HTML, "<strong>mehr als 1.000 Beschäftigten") || len(answer.item.Buttons) == 0 {
		t.Errorf("answer event: %+v", answer.item)
	}
	// A reconnecting page gets only what came after its last event.
	f.post(t, "/api/chat/messages", `{"chat":"`+chat+`","data":"y:csrd-scope","label":"👍"}`)
	resumed := f.stream(t, chat, answer.id)
	if ev := next(t, resumed); ev.item.From != "user" || ev.item.Text != "👍" {
		t.Errorf("after resuming: %+v", ev.item)
	}
	if ev := next(t, resumed); !strings.Contains(ev.item.HTML, "Schön, dass es geholfen hat") {
		t.Errorf("feedback reply: %+v", ev.item)
	}
}

func TestNewChatsAreLimitedPerAddress(t *testing.T) {
	f := newFixture(t, Config{NewChatsPerMin: 3})
	codes := map[int]int{}
	for range 5 {
		code, _ := f.post(t, "/api/chat/session", "")
		codes[code]++
	}
	if codes[201] != 3 || codes[429] != 2 {
		t.Errorf("5 new chats at once with a limit of 3 a minute: %v", codes)
	}
}

func TestChatAPIRejectsBadInput(t *testing.T) {
	f := newFixture(t, Config{})
	chat := f.session(t)
	tests := []struct {
		body string
		code int
		msg  string
	}{
		{`not json`, 400, "body must be JSON"},
		{`{"chat":"../../etc","text":"hi"}`, 400, "chat must be the id"},
		{`{"chat":"` + chat + `","text":"   "}`, 400, "text or data is required"},
		{`{"chat":"` + chat + `","data":"` + strings.Repeat("x", 300) + `"}`, 400, "too long"},
		{`{"chat":"` + chat + `","text":"` + strings.Repeat("x", 40000) + `"}`, 413, "body over"},
	}
	for _, tt := range tests {
		code, body := f.post(t, "/api/chat/messages", tt.body)
		if code != tt.code || !strings.Contains(body, tt.msg) {
			t.Errorf("%.40s: %d %s, want %d %q", tt.body, code, body, tt.code, tt.msg)
		}
	}
	for _, q := range []string{"chat=nope", "chat=" + chat + "&x=1"} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/chat/events?"+q, nil)
		req.Header.Set("Last-Event-ID", "not-an-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("events?%s with a bad Last-Event-ID: %d, want 400", q, resp.StatusCode)
		}
	}
	// An overlong message that fits the body limit gets the bot's polite answer.
	f.post(t, "/api/chat/messages", `{"chat":"`+chat+`","text":"`+strings.Repeat("y", 3000)+`"}`)
	events := f.stream(t, chat, "")
	next(t, events)
	if ev := next(t, events); !strings.Contains(ev.item.HTML, "too long") {
		t.Errorf("overlong message: %+v", ev.item)
	}
}

// staffClient is a browser-like client with cookies that does not follow redirects.
func staffClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`)

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (int, string, http.Header) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func login(t *testing.T, f *fixture, c *http.Client, name, secret string) int {
	t.Helper()
	_, page, _ := get(t, c, f.srv.URL+"/staff/login")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field on the login page:\n%s", page)
	}
	code, _, _ := postForm(t, c, f.srv.URL+"/staff/login", url.Values{"csrf": {m[1]}, "name": {name}, "secret": {secret}})
	return code
}

func TestStaffInbox(t *testing.T) {
	f := newFixture(t, Config{StaffToken: "tok"})
	ctx := context.Background()
	// A person asks for help with markup in the question.
	chat := f.session(t)
	f.post(t, "/api/chat/messages", `{"chat":"`+chat+`","text":"/human <script>alert(1)</script> help"}`)

	c := staffClient(t)
	if code, _, h := get(t, c, f.srv.URL+"/staff"); code != 303 || h.Get("Location") != "/staff/login" {
		t.Errorf("inbox without login: %d %s", code, h.Get("Location"))
	}
	if code := login(t, f, c, "Bea", "wrong"); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code := login(t, f, c, "Bea", "tok"); code != 303 {
		t.Fatalf("login: %d, want 303", code)
	}
	code, page, h := get(t, c, f.srv.URL+"/staff")
	if code != 200 || !strings.Contains(page, `href="/staff/tickets/1"`) {
		t.Fatalf("inbox: %d\n%s", code, page)
	}
	if strings.Contains(page, "<script>alert(1)") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the inbox does not escape what people typed")
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("no content security policy: %q", h.Get("Content-Security-Policy"))
	}
	_, page, _ = get(t, c, f.srv.URL+"/staff/tickets/1")
	csrf := csrfField.FindStringSubmatch(page)[1]

	// A form without its CSRF token changes nothing.
	if code, _, _ := postForm(t, c, f.srv.URL+"/staff/tickets/1/claim", url.Values{}); code != 403 {
		t.Errorf("claim without CSRF token: %d, want 403", code)
	}
	if tk, _, _ := f.engine.Ticket(ctx, 1); tk.State != bot.StateNew {
		t.Errorf("ticket changed without a CSRF token: %s", tk.State)
	}
	if code, _, _ := postForm(t, c, f.srv.URL+"/staff/tickets/1/reply", url.Values{"csrf": {csrf}, "text": {"Hi, Bea here."}}); code != 303 {
		t.Errorf("reply: %d", code)
	}
	if code, _, _ := postForm(t, c, f.srv.URL+"/staff/tickets/1/resolve", url.Values{"csrf": {csrf}}); code != 303 {
		t.Errorf("resolve: %d", code)
	}
	tk, _, _ := f.engine.Ticket(ctx, 1)
	if tk.State != bot.StateResolved || tk.Assignee != "Bea" {
		t.Errorf("after reply and resolve: %+v", tk)
	}
	_, _, h = postForm(t, c, f.srv.URL+"/staff/tickets/1/reply", url.Values{"csrf": {csrf}, "text": {"late"}})
	if !strings.Contains(h.Get("Location"), "error=") {
		t.Errorf("reply to a resolved ticket: redirected to %q, want an error", h.Get("Location"))
	}
	// Search finds it among past tickets.
	if _, page, _ := get(t, c, f.srv.URL+"/staff?q=alert"); !strings.Contains(page, `href="/staff/tickets/1"`) {
		t.Error("search does not find the ticket")
	}
	if _, page, _ := get(t, c, f.srv.URL+"/staff?q=nothing+like+this"); strings.Contains(page, `href="/staff/tickets/1"`) {
		t.Error("search finds what is not there")
	}
	// A session cookie with another name but the same signature is refused.
	u, _ := url.Parse(f.srv.URL + "/staff")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			parts := strings.Split(ck.Value, "|")
			forged := &http.Cookie{Name: sessionCookie, Value: "QWRtaW4|" + parts[1] + "|" + parts[2], Path: "/staff"}
			c.Jar.SetCookies(u, []*http.Cookie{forged})
		}
	}
	if code, _, _ := get(t, c, f.srv.URL+"/staff"); code != 303 {
		t.Errorf("forged session: %d, want a redirect to the login", code)
	}
}

func TestStaffUsers(t *testing.T) {
	f := newFixture(t, Config{StaffUsers: map[string]string{"ana": "pw-ana"}})
	if code := login(t, f, staffClient(t), "ana", "pw-bob"); code != 401 {
		t.Errorf("wrong password: %d", code)
	}
	if code := login(t, f, staffClient(t), "bob", "pw-ana"); code != 401 {
		t.Errorf("someone else's password: %d", code)
	}
	if code := login(t, f, staffClient(t), "ana", "pw-ana"); code != 303 {
		t.Errorf("right password: %d", code)
	}
	// Guessing is slowed down: at most 10 attempts a minute from one address.
	c := staffClient(t)
	codes := map[int]int{}
	for range 12 {
		codes[login(t, f, c, "ana", "guess")]++
	}
	if codes[429] == 0 {
		t.Errorf("12 wrong logins in a row: %v, want some refused with 429", codes)
	}
	off := newFixture(t, Config{})
	if _, page, _ := get(t, staffClient(t), off.srv.URL+"/staff/login"); !strings.Contains(page, "The staff inbox is off") {
		t.Error("with no token or users the login page should say the inbox is off")
	}
	if code, _, _ := postForm(t, staffClient(t), off.srv.URL+"/staff/login", url.Values{"name": {"x"}, "secret": {""}}); code == 303 {
		t.Error("logged in with no way to log in configured")
	}
}

func TestForgetAnAddress(t *testing.T) {
	f := newFixture(t, Config{})
	a, b := f.session(t), f.session(t)
	f.post(t, "/api/chat/messages", `{"chat":"`+a+`","text":"Is the CSRD for us? Write to Jo@Firma.de"}`)
	f.post(t, "/api/chat/messages", `{"chat":"`+b+`","text":"What is the CSRD?"}`)
	ctx := context.Background()
	before := f.web.rdb.XLen(ctx, streamKey(a)).Val() + f.web.rdb.XLen(ctx, streamKey(b)).Val()
	n, err := Forget(ctx, f.web.rdb, "jo@firma.de")
	if err != nil || n != 1 {
		t.Fatalf("forget: %d %v", n, err)
	}
	after := f.web.rdb.XLen(ctx, streamKey(a)).Val() + f.web.rdb.XLen(ctx, streamKey(b)).Val()
	for _, m := range f.web.rdb.XRange(ctx, streamKey(a), "-", "+").Val() {
		if strings.Contains(strings.ToLower(m.Values["m"].(string)), "jo@firma.de") {
			t.Errorf("still there: %v", m.Values)
		}
	}
	if after != before-1 {
		t.Errorf("%d messages before, %d after: only the one naming the address should go", before, after)
	}
}

// TestShutdown: EndStreams ends the open event streams (a server shutting down would wait for them for ever),
// and Run returns once ctx ends, its Pub/Sub subscription closed, so that Redis can be closed after it.
func TestShutdown(t *testing.T) {
	f := newFixture(t, Config{StreamWait: time.Minute})
	events := f.stream(t, f.session(t), "")
	f.web.EndStreams()
	f.web.EndStreams() // a second call (a second shutdown) is harmless
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-timeout:
			t.Fatal("the event stream is still open 5 s after EndStreams")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.web.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond) // subscribed
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run still relaying 5 s after ctx ended")
	}
}
