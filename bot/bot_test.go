package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"csrdesk/faq"
	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
	"csrdesk/templates"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

// recorder is a Channel that keeps what it was asked to send.
type recorder struct {
	mu   sync.Mutex
	sent map[string][]Reply
}

func (r *recorder) Send(_ context.Context, chat string, reply Reply) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent == nil {
		r.sent = map[string][]Reply{}
	}
	r.sent[chat] = append(r.sent[chat], reply)
	return nil
}

// take returns and forgets what was sent to chat.
func (r *recorder) take(chat string) []Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent[chat]
	delete(r.sent, chat)
	return out
}

var (
	matcherOnce sync.Once
	matcher     *faq.Matcher
)

func mustMatcher(tb testing.TB) *faq.Matcher {
	tb.Helper()
	matcherOnce.Do(func() {
		b, problems := faq.Load(faq.Embedded())
		if b == nil {
			tb.Fatal(problems)
		}
		matcher = faq.NewMatcher(b, faq.DefaultConfig())
	})
	return matcher
}

type fixture struct {
	e   *Engine
	ch  *recorder
	rdb *redis.Client
	reg *prometheus.Registry
	now time.Time
}

// newFixture returns an engine on a fresh Redis database, with a "test" channel, at a Wednesday noon in Brussels.
func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{ch: &recorder{}, rdb: redisSrv.Client(t), reg: prometheus.NewRegistry()}
	f.now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.e = f.engine(t, cfg)
	return f
}

// noLimit is the default configuration without the rate limit, for tests that send many messages at once.
func noLimit() Config {
	cfg := DefaultConfig()
	cfg.RatePerMin = 0
	return cfg
}

// engine builds an engine on the fixture's Redis, as a restarted process would.
func (f *fixture) engine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	texts, err := templates.Bot()
	if err != nil {
		t.Fatal(err)
	}
	m := mustMatcher(t)
	e := New(cfg, f.rdb, func() *faq.Matcher { return m }, texts, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	e.now = func() time.Time { return f.now }
	e.Register("test", f.ch)
	return e
}

func (f *fixture) say(t *testing.T, chat, text string) []Reply {
	t.Helper()
	if err := f.e.Handle(context.Background(), Message{Channel: "test", Chat: chat, User: "u-" + chat, Name: "Ada", Text: text}); err != nil {
		t.Fatalf("Handle(%q): %v", text, err)
	}
	return f.ch.take(chat)
}

func (f *fixture) press(t *testing.T, chat, data string) []Reply {
	t.Helper()
	if err := f.e.Handle(context.Background(), Message{Channel: "test", Chat: chat, User: "u-" + chat, Name: "Ada", Data: data}); err != nil {
		t.Fatalf("press %q: %v", data, err)
	}
	return f.ch.take(chat)
}

func buttons(r Reply) []string {
	var out []string
	for _, row := range r.Buttons {
		for _, b := range row {
			out = append(out, b.Data)
		}
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func one(t *testing.T, replies []Reply) Reply {
	t.Helper()
	if len(replies) != 1 {
		t.Fatalf("got %d replies, want 1: %+v", len(replies), replies)
	}
	return replies[0]
}

func TestAnswer(t *testing.T) {
	f := newFixture(t, noLimit())
	r := one(t, f.say(t, "c1", "Does the CSRD apply to our company?"))
	want := mustMatcher(t).Base().Entry("csrd-scope")
	if r.Text != want.In("en").Answer {
		t.Errorf("answer = %q", r.Text)
	}
	b := buttons(r)
	for _, d := range []string{"y:csrd-scope", "n:csrd-scope", "h", "a:" + want.Related[0]} {
		if !has(b, d) {
			t.Errorf("buttons %v lack %q", b, d)
		}
	}
	// A follow-up button shows that entry.
	r = one(t, f.press(t, "c1", "a:"+want.Related[0]))
	if r.Text != mustMatcher(t).Base().Entry(want.Related[0]).In("en").Answer {
		t.Errorf("follow-up answer = %q", r.Text)
	}
	if got := testutil.ToFloat64(f.e.metrics.Questions.WithLabelValues("answer", "en")); got != 1 {
		t.Errorf("questions{answer,en} = %v, want 1", got)
	}
}

func TestAnswerInTheQuestionsLanguage(t *testing.T) {
	f := newFixture(t, noLimit())
	r := one(t, f.say(t, "c1", "Gilt die CSRD für unser Unternehmen?"))
	if r.Text != mustMatcher(t).Base().Entry("csrd-scope").In("de").Answer {
		t.Errorf("German question answered with %q", r.Text)
	}
	// The conversation stays German for a command.
	if r := one(t, f.say(t, "c1", "/help")); !strings.Contains(r.Text, "Stellen Sie Ihre Frage") {
		t.Errorf("/help after a German question: %q", r.Text)
	}
}

// TestReplyLanguage: the reply is in the language of the question's words; when they do not say ("scope 3?"), in
// the conversation's language so far, else the chat app's.
func TestReplyLanguage(t *testing.T) {
	f := newFixture(t, noLimit())
	ask := func(chat, text string, app faq.Lang) Reply {
		t.Helper()
		if err := f.e.Handle(context.Background(), Message{Channel: "test", Chat: chat, User: "u-" + chat, Text: text, LangHint: app}); err != nil {
			t.Fatal(err)
		}
		return one(t, f.ch.take(chat))
	}
	help := func(chat string, want faq.Lang) {
		t.Helper()
		if r := ask(chat, "/help", ""); r.Text != f.e.text(want, "help", nil) {
			t.Errorf("chat %s speaks another language than %s: /help = %q", chat, want, r.Text)
		}
	}
	ask("c1", "scope 3?", "fr") // the chat app's language, as the words say nothing
	help("c1", "fr")
	ask("c1", "Gilt die CSRD für unser Unternehmen?", "fr") // the words win over the app
	help("c1", "de")
	ask("c1", "scope 3?", "") // the conversation's language
	help("c1", "de")
	ask("c2", "scope 3?", "") // nothing to go on: the default language
	help("c2", "en")
}

func TestSuggest(t *testing.T) {
	f := newFixture(t, noLimit())
	r := one(t, f.say(t, "c1", "our emissions"))
	texts, _ := templates.Bot()
	if !slices.ContainsFunc(faq.Langs, func(l faq.Lang) bool { return r.Text == texts.Text(string(l), "suggest", nil) }) {
		t.Errorf("suggest text = %q", r.Text)
	}
	b := buttons(r)
	if len(b) < 2 || !strings.HasPrefix(b[0], "a:") || b[len(b)-1] != "h" {
		t.Errorf("suggestion buttons = %v, want entries then staff", b)
	}
}

func TestNoMatchOffersStaff(t *testing.T) {
	f := newFixture(t, noLimit())
	r := one(t, f.say(t, "c1", "zorblax quux frobnicate"))
	if !strings.Contains(r.Text, "no good answer") || !has(buttons(r), "h") {
		t.Errorf("no match: %+v", r)
	}
	if n, _ := f.rdb.Exists(context.Background(), chatKey(rdb.ChatTicketPrefix, "test", "c1")).Result(); n != 0 {
		t.Error("a question the bot cannot answer opened a ticket without being asked to")
	}
}

func TestFeedback(t *testing.T) {
	f := newFixture(t, noLimit())
	f.say(t, "c1", "how do we calculate scope 1 and 2 emissions")
	if r := one(t, f.press(t, "c1", "y:scope-1-2")); !strings.Contains(r.Text, "Glad") {
		t.Errorf("helped: %q", r.Text)
	}
	r := one(t, f.press(t, "c1", "n:scope-1-2"))
	b := buttons(r)
	if has(b, "a:scope-1-2") || b[len(b)-1] != "h" {
		t.Errorf("not helped: buttons %v, want other entries then staff", b)
	}
	if got := testutil.ToFloat64(f.e.metrics.Feedback.WithLabelValues("not_helped")); got != 1 {
		t.Errorf("feedback{not_helped} = %v", got)
	}
}

// TestSmallTalkAndOutOfScope: a greeting gets a short reply without buttons, "thanks" after an answer counts as that
// answer having helped (once), and a question the help desk does not cover is declined with a way to staff.
func TestSmallTalkAndOutOfScope(t *testing.T) {
	f := newFixture(t, noLimit())
	base := mustMatcher(t).Base()
	r := one(t, f.say(t, "c1", "Hi!"))
	if r.Text != base.Entry("smalltalk-hello").In("en").Answer || len(r.Buttons) != 0 {
		t.Errorf("greeting: %+v", r)
	}
	if got := testutil.ToFloat64(f.e.metrics.Feedback.WithLabelValues("helped")); got != 0 {
		t.Errorf("thanks before any answer counted as helped: %v", got)
	}
	f.say(t, "c1", "how do we calculate scope 1 and 2 emissions")
	for range 2 {
		if r := one(t, f.say(t, "c1", "thanks!")); r.Text != base.Entry("smalltalk-thanks").In("en").Answer {
			t.Errorf("thanks: %q", r.Text)
		}
	}
	if got := testutil.ToFloat64(f.e.metrics.Feedback.WithLabelValues("helped")); got != 1 {
		t.Errorf("feedback{helped} after an answer and two thanks = %v, want 1", got)
	}
	// The small talk did not replace the question staff would see.
	if c, err := f.e.loadConv(context.Background(), Message{Channel: "test", Chat: "c1"}); err != nil || c.LastQ != "how do we calculate scope 1 and 2 emissions" {
		t.Errorf("last question after small talk = %q (%v)", c.LastQ, err)
	}
	// Pressing "helped" and then saying thanks counts once.
	f.say(t, "c1", "what is the CBAM")
	f.press(t, "c1", "y:cbam")
	f.say(t, "c1", "thanks!")
	if got := testutil.ToFloat64(f.e.metrics.Feedback.WithLabelValues("helped")); got != 2 {
		t.Errorf("feedback{helped} after a button and a thanks = %v, want 2", got)
	}
	r = one(t, f.say(t, "c2", "What's the price of a new 5-axis machining centre?"))
	if r.Text != base.Entry("out-of-scope-prices").In("en").Answer || !slices.Equal(buttons(r), []string{"h"}) {
		t.Errorf("out of scope: %q %v", r.Text, buttons(r))
	}
	for decision, want := range map[string]float64{"small_talk": 4, "out_of_scope": 1, "answer": 2} {
		if got := testutil.ToFloat64(f.e.metrics.Questions.WithLabelValues(decision, "en")); got != want {
			t.Errorf("questions{%s,en} = %v, want %v", decision, got, want)
		}
	}
}

func TestHandoffLoop(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, noLimit())
	f.say(t, "c1", "will machine tools fall under CBAM in 2028?")
	r := one(t, f.say(t, "c1", "I want to talk to a human"))
	if !strings.Contains(r.Text, "ticket #1") {
		t.Fatalf("escalation reply: %q", r.Text)
	}
	tk, log, err := f.e.Ticket(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tk.State != StateNew || tk.Channel != "test" || tk.Chat != "c1" || tk.Name != "Ada" || tk.Lang != "en" ||
		tk.Question != "will machine tools fall under CBAM in 2028?" {
		t.Errorf("ticket = %+v", tk)
	}
	if len(log) < 3 || log[0].Text != "will machine tools fall under CBAM in 2028?" {
		t.Errorf("the transcript lacks the conversation before the handover: %+v", log)
	}

	// While the ticket is open the bot stays silent and the message goes to the ticket.
	if got := f.say(t, "c1", "what is the CSRD?"); len(got) != 0 {
		t.Errorf("bot answered over the staff: %+v", got)
	}
	if _, log, _ = f.e.Ticket(ctx, 1); log[len(log)-1].Text != "what is the CSRD?" || log[len(log)-1].From != "user" {
		t.Errorf("the message did not reach the ticket: %+v", log[len(log)-1])
	}

	// An internal note never reaches the person.
	if err := f.e.StaffReply(ctx, 1, Staff{Name: "Bea"}, "note: customer of ours, check the CBAM proposal"); err != nil {
		t.Fatal(err)
	}
	if got := f.ch.take("c1"); len(got) != 0 {
		t.Errorf("a note reached the person: %+v", got)
	}
	// A reply does, and claims the ticket.
	if err := f.e.StaffReply(ctx, 1, Staff{Name: "Bea"}, "The extension is only a proposal so far."); err != nil {
		t.Fatal(err)
	}
	r = one(t, f.ch.take("c1"))
	if r.Text != "**Bea** (platform staff): The extension is only a proposal so far." || r.From != "staff" {
		t.Errorf("staff reply as the person saw it: %+v", r)
	}
	tk, log, _ = f.e.Ticket(ctx, 1)
	if tk.State != StateClaimed || tk.Assignee != "Bea" || tk.FirstReply.IsZero() {
		t.Errorf("after the reply: %+v", tk)
	}
	var note *LogEntry
	for i := range log {
		if log[i].From == "note" {
			note = &log[i]
		}
	}
	if note == nil || note.Text != "customer of ours, check the CBAM proposal" || note.Name != "Bea" {
		t.Errorf("note in the log: %+v", note)
	}

	// Resolving tells the person and asks for a rating; the bot answers again.
	if err := f.e.Resolve(ctx, 1, Staff{Name: "Bea"}); err != nil {
		t.Fatal(err)
	}
	r = one(t, f.ch.take("c1"))
	if !strings.Contains(r.Text, "resolved") || !has(buttons(r), "rate:1:5") {
		t.Errorf("resolve message: %+v", r)
	}
	if r := one(t, f.press(t, "c1", "rate:1:4")); !strings.Contains(r.Text, "Thank you") {
		t.Errorf("rating reply: %q", r.Text)
	}
	f.press(t, "c1", "rate:1:1") // a second rating does not overwrite the first
	if tk, _, _ = f.e.Ticket(ctx, 1); tk.Rating != 4 || tk.State != StateResolved {
		t.Errorf("after rating: %+v", tk)
	}
	if r := one(t, f.say(t, "c1", "what is the CSRD?")); r.From != "bot" || len(r.Buttons) == 0 {
		t.Errorf("after resolving, the bot should answer again: %+v", r)
	}
	if err := f.e.StaffReply(ctx, 1, Staff{Name: "Bea"}, "one more thing"); err == nil {
		t.Error("a reply on a resolved ticket was accepted")
	}
	for ev, want := range map[string]float64{"opened": 1, "claimed": 1, "resolved": 1} {
		if got := testutil.ToFloat64(f.e.metrics.Tickets.WithLabelValues(ev)); got != want {
			t.Errorf("tickets{%s} = %v, want %v", ev, got, want)
		}
	}
}

func TestRatingOnlyFromItsChat(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, noLimit())
	f.say(t, "c1", "/human")
	f.e.Resolve(ctx, 1, Staff{Name: "Bea"})
	f.ch.take("c1")
	f.press(t, "c2", "rate:1:1")
	if tk, _, _ := f.e.Ticket(ctx, 1); tk.Rating != 0 {
		t.Errorf("another chat rated the ticket: %d", tk.Rating)
	}
}

func TestRestartInTheMiddleOfATicket(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, noLimit())
	f.say(t, "c1", "/human is there a fee to join?")
	// A new process on the same Redis.
	f.e = f.engine(t, noLimit())
	if got := f.say(t, "c1", "hello? anyone"); len(got) != 0 {
		t.Errorf("after a restart the bot answered over the staff: %+v", got)
	}
	tk, log, err := f.e.Ticket(ctx, 1)
	if err != nil || tk.Question != "is there a fee to join?" || log[len(log)-1].Text != "hello? anyone" {
		t.Fatalf("ticket after restart: %+v %+v %v", tk, log, err)
	}
	if err := f.e.StaffReply(ctx, 1, Staff{Name: "Bea"}, "No fee."); err != nil {
		t.Fatal(err)
	}
	if r := one(t, f.ch.take("c1")); !strings.HasSuffix(r.Text, "No fee.") {
		t.Errorf("reply after restart: %q", r.Text)
	}
}

func TestOneTicketPerChat(t *testing.T) {
	f := newFixture(t, noLimit())
	f.say(t, "c1", "/human")
	if r := one(t, f.say(t, "c1", "/human")); !strings.Contains(r.Text, "already with our staff") {
		t.Errorf("second /human: %q", r.Text)
	}
	if open, _ := f.e.Tickets(context.Background(), true, 10); len(open) != 1 {
		t.Errorf("%d open tickets, want 1", len(open))
	}
}

func TestAfterHours(t *testing.T) {
	f := newFixture(t, noLimit())
	f.now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) // a Saturday
	r := one(t, f.say(t, "c1", "/human"))
	if !strings.Contains(r.Text, "Mon-Fri 09:00-17:00 Europe/Brussels") || !strings.Contains(r.Text, "Mon 30 Nov 09:00 CET") {
		t.Errorf("after hours: %q", r.Text)
	}
	f2 := newFixture(t, noLimit())
	if r := one(t, f2.say(t, "c1", "/human")); strings.Contains(r.Text, "Mon-Fri") {
		t.Errorf("within office hours the person was told to wait: %q", r.Text)
	}
}

func TestReminder(t *testing.T) {
	ctx := context.Background()
	cfg := noLimit()
	cfg.RemindAfter = 30 * time.Minute
	f := newFixture(t, cfg)
	f.say(t, "c1", "/human")
	f.say(t, "c2", "/human")
	f.e.Claim(ctx, 2, Staff{Name: "Bea"})
	f.now = f.now.Add(20 * time.Minute)
	if n, _ := f.e.RemindUnclaimed(ctx); n != 0 {
		t.Errorf("reminded %d tickets after 20 minutes", n)
	}
	f.now = f.now.Add(20 * time.Minute)
	if n, err := f.e.RemindUnclaimed(ctx); n != 1 || err != nil {
		t.Errorf("reminded %d tickets (%v), want 1: the unclaimed one", n, err)
	}
	if n, _ := f.e.RemindUnclaimed(ctx); n != 0 {
		t.Errorf("reminded again: %d", n)
	}
}

func TestRateLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RatePerMin = 2 // a burst of one
	f := newFixture(t, cfg)
	if r := one(t, f.say(t, "c1", "what is the CSRD?")); strings.Contains(r.Text, "faster than I can read") {
		t.Fatal("the first message was rate limited")
	}
	if r := one(t, f.say(t, "c1", "and the CSDDD?")); !strings.Contains(r.Text, "faster than I can read") {
		t.Errorf("second message at once: %q, want the rate-limit message", r.Text)
	}
	// Another person is not affected.
	if r := one(t, f.say(t, "c2", "and the CSDDD?")); strings.Contains(r.Text, "faster than I can read") {
		t.Error("one person's rate limit hit another")
	}
}

func TestLimitsAndCommands(t *testing.T) {
	f := newFixture(t, noLimit())
	if r := one(t, f.say(t, "c1", strings.Repeat("x", 2001))); !strings.Contains(r.Text, "at most 2000 characters") {
		t.Errorf("too long: %q", r.Text)
	}
	if r := one(t, f.say(t, "c1", "/start@csrdesk_bot")); !strings.Contains(r.Text, "Hello Ada!") {
		t.Errorf("/start: %q", r.Text)
	}
	r := one(t, f.say(t, "c1", "/topics"))
	if b := buttons(r); len(b) != 11 || b[0] != "t:platform" {
		t.Errorf("/topics buttons: %v", b)
	}
	if r := one(t, f.press(t, "c1", "t:eu-law")); !has(buttons(r), "a:csrd-scope") {
		t.Errorf("topic eu-law: %v", buttons(r))
	}
	if r := one(t, f.say(t, "c1", "/language")); len(buttons(r)) != 5 {
		t.Errorf("/language: %+v", r)
	}
	if r := one(t, f.press(t, "c1", "l:fr")); r.Text != "Désormais je réponds en français." {
		t.Errorf("language set: %q", r.Text)
	}
	// An English question is now answered in French.
	r = one(t, f.say(t, "c1", "Does the CSRD apply to our company?"))
	if r.Text != mustMatcher(t).Base().Entry("csrd-scope").In("fr").Answer {
		t.Errorf("after /language fr: %q", r.Text)
	}
	if got := f.press(t, "c1", "nonsense:data"); len(got) != 0 {
		t.Errorf("unknown button answered: %+v", got)
	}
	if r := one(t, f.say(t, "c1", "\xff\xfe")); r.Text == "" {
		t.Error("invalid UTF-8 got an empty reply")
	}
}

func TestHours(t *testing.T) {
	if _, err := ParseHours("Mon-Fri 9-17 Europe/Brussels"); err == nil {
		t.Error("bad time range accepted")
	}
	if _, err := ParseHours("Mon-Fry 09:00-17:00 Europe/Brussels"); err == nil {
		t.Error("bad day accepted")
	}
	if _, err := ParseHours("Mon-Fri 09:00-17:00 Mars/Olympus"); err == nil {
		t.Error("bad zone accepted")
	}
	h, err := ParseHours("Fri-Mon 08:00-12:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	sun := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	if !h.Open(sun) || h.Open(sun.Add(24*time.Hour+4*time.Hour)) || h.Open(sun.Add(48*time.Hour)) {
		t.Error("Fri-Mon wraps around the week")
	}
	if got := h.Next(sun.Add(48 * time.Hour)); !got.Equal(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("next opening after Tuesday = %v, want Friday 08:00", got)
	}
}

func TestSubscribeFromChat(t *testing.T) {
	f := newFixture(t, noLimit())
	if r := one(t, f.say(t, "c1", "/subscribe")); !strings.Contains(r.Text, "not open") {
		t.Errorf("subscribe with no mailer: %q", r.Text)
	}
	type request struct{ email, lang, via, source, consent string }
	var got []request
	f.e.SetSubscribe("https://platform.example/subscribe", func(_ context.Context, email string, lang faq.Lang, via, source, consent string) error {
		if !strings.Contains(email, "@") {
			return fmt.Errorf("%w: %q is not an email address", ErrInvalid, email)
		}
		got = append(got, request{email, string(lang), via, source, consent})
		if email == "down@example.com" {
			return errors.New("smtp: connection refused")
		}
		return nil
	})
	f.say(t, "c1", "/language de")
	if r := one(t, f.say(t, "c1", "/subscribe")); !strings.Contains(r.Text, "E-Mail-Adresse") {
		t.Fatalf("ask: %q", r.Text)
	}
	if r := one(t, f.say(t, "c1", "my address is secret")); !strings.Contains(r.Text, "/cancel") || len(got) != 0 {
		t.Errorf("not an address: %q", r.Text)
	}
	if r := one(t, f.say(t, "c1", "Jo@Firma.de")); !strings.Contains(r.Text, "jo@firma.de") {
		t.Errorf("sent: %q", r.Text)
	}
	if len(got) != 1 || got[0].lang != "de" || got[0].via != "chat:test" || got[0].source != "test:c1" || !strings.Contains(got[0].consent, "Mailings") {
		t.Errorf("requests: %+v", got)
	}
	// The address was taken: the next message is a question again.
	if r := f.say(t, "c1", "Was ist CSRD?"); len(r) == 0 || strings.Contains(r[0].Text, "/cancel") {
		t.Errorf("after subscribing: %+v", r)
	}
	f.say(t, "c2", "/subscribe")
	if r := one(t, f.say(t, "c2", "/cancel")); !strings.Contains(r.Text, "no subscription") || len(got) != 1 {
		t.Errorf("cancel: %q", r.Text)
	}
	if r := one(t, f.say(t, "c3", "/subscribe down@example.com")); !strings.Contains(r.Text, "https://platform.example/subscribe") {
		t.Errorf("failed request: %q", r.Text)
	}
}

func TestForgetAnAddress(t *testing.T) {
	f := newFixture(t, noLimit())
	ctx := context.Background()
	f.say(t, "c1", "Does the CSRD apply to us?")
	f.say(t, "c1", "/human please call me back, write to Jo@Firma.de")
	f.say(t, "c1", "thanks")
	f.say(t, "c2", "/human I am ana@example.es")
	n, err := Forget(ctx, f.rdb, "jo@firma.de")
	if err != nil || n < 3 { // the question, its line in the ticket's log and in the chat's history
		t.Fatalf("forget: %d %v", n, err)
	}
	tk, log, err := f.e.Ticket(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, e := range log {
		texts = append(texts, e.Text)
	}
	all := tk.Question + "\n" + strings.Join(texts, "\n")
	if strings.Contains(strings.ToLower(all), "jo@firma.de") || !strings.Contains(all, "Does the CSRD apply to us?") || !strings.Contains(all, "[erased on request]") {
		t.Errorf("ticket after forgetting:\n%s", all)
	}
	for _, k := range f.rdb.Keys(ctx, "*").Val() {
		if typ := f.rdb.Type(ctx, k).Val(); typ == "list" || typ == "hash" {
			if strings.Contains(strings.ToLower(fmt.Sprint(f.rdb.LRange(ctx, k, 0, -1).Val(), f.rdb.HGetAll(ctx, k).Val())), "jo@firma.de") {
				t.Errorf("%s still holds the address", k)
			}
		}
	}
	if tk2, _, _ := f.e.Ticket(ctx, 2); !strings.Contains(tk2.Question, "ana@example.es") {
		t.Errorf("another person's ticket changed: %q", tk2.Question)
	}
}

// A reminder whose event cannot be written is not marked as raised: the next run raises it.
func TestReminderRaisedAgainAfterAFailure(t *testing.T) {
	ctx := context.Background()
	cfg := noLimit()
	cfg.RemindAfter = 30 * time.Minute
	f := newFixture(t, cfg)
	f.say(t, "c1", "/human")
	f.now = f.now.Add(40 * time.Minute)
	f.rdb.Del(ctx, rdb.TicketEvents)
	f.rdb.Set(ctx, rdb.TicketEvents, "in the way", 0) // XADD to it fails: WRONGTYPE
	if n, err := f.e.RemindUnclaimed(ctx); n != 0 || err == nil {
		t.Errorf("with the event stream unwritable: %d reminders, %v", n, err)
	}
	f.rdb.Del(ctx, rdb.TicketEvents)
	if n, err := f.e.RemindUnclaimed(ctx); n != 1 || err != nil {
		t.Errorf("once it can be written: %d reminders, %v; want the one", n, err)
	}
}
