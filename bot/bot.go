// Package bot is the conversation engine of the help desk, free of any chat platform: a Message comes in, the
// knowledge base's matcher decides, a Reply goes out through the Channel the message came from. When the bot
// cannot help, or is asked to, it opens a ticket and stays silent while staff answer; staff replies reach the
// person through the same Channel. All state lives in Redis, so any number of processes can share the work and a
// restart loses nothing.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"csrdesk/faq"
	"csrdesk/internal/rdb"
	"csrdesk/templates"
)

// Message is what a person sent, as a channel adapter saw it.
type Message struct {
	Channel  string   // the adapter's name: "web", "telegram", "slack"
	Chat     string   // the conversation within the channel
	User     string   // who wrote, within the channel
	Name     string   // their display name, if known
	LangHint faq.Lang // the language their app reports, or ""
	Text     string   // what they typed
	Data     string   // the data of the button they pressed, instead of text
}

// Reply is what the bot (or staff, through the bot) sends to a chat: Markdown text and optional buttons.
type Reply struct {
	Text    string
	Buttons [][]Button // rows of buttons
	From    string     // "bot" or "staff"
	Private bool       // kept out of the conversation's history: it holds personal data (an email address)
}

// Button is a choice offered with a reply; Data comes back in Message.Data when it is pressed.
type Button struct {
	Label string
	Data  string
}

// Channel delivers replies to the chats of one platform. Each adapter implements it.
type Channel interface {
	Send(ctx context.Context, chat string, r Reply) error
}

// Config holds the engine's limits and staff settings.
type Config struct {
	MaxMessage  int           // longest message read, in characters
	RatePerMin  int           // messages a person may send per minute (with a burst of half that); 0 for no limit
	StateTTL    time.Duration // how long a quiet conversation's state is kept
	RemindAfter time.Duration // a ticket unclaimed this long raises a reminder
	Hours       Hours         // when staff work
}

// DefaultConfig returns the engine's defaults.
func DefaultConfig() Config {
	return Config{MaxMessage: 2000, RatePerMin: 20, StateTTL: 7 * 24 * time.Hour, RemindAfter: 30 * time.Minute, Hours: DefaultHours()}
}

// Engine runs conversations. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	rdb      redis.UniversalClient
	limiter  *redis_rate.Limiter
	matcher  func() *faq.Matcher
	texts    *templates.Texts
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	mu       sync.RWMutex
	channels map[string]Channel

	subscribe    SubscribeFunc // nil: /subscribe says subscriptions are closed
	subscribeURL string
}

// SubscribeFunc asks for the platform's mailings to go to email (a double opt-in request: the mailer sends the
// confirmation). via names the chat ("chat:telegram"), source the chat itself, consent the words shown to the
// person. It returns an error wrapping ErrInvalid for an address that is not one.
type SubscribeFunc func(ctx context.Context, email string, lang faq.Lang, via, source, consent string) error

// SetSubscribe enables /subscribe; url is the subscribe page, offered when a request fails.
func (e *Engine) SetSubscribe(url string, fn SubscribeFunc) {
	e.subscribeURL, e.subscribe = url, fn
}

// New returns an engine. matcher returns the current knowledge base's matcher (it may change on reload).
func New(cfg Config, rdb redis.UniversalClient, matcher func() *faq.Matcher, texts *templates.Texts, metrics *Metrics, log *slog.Logger) *Engine {
	return &Engine{
		cfg: cfg, rdb: rdb, limiter: redis_rate.NewLimiter(rdb), matcher: matcher, texts: texts, log: log,
		metrics: metrics, now: time.Now, channels: map[string]Channel{},
	}
}

// Register makes a channel available for replies to its chats.
func (e *Engine) Register(name string, ch Channel) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.channels[name] = ch
}

// Errors the engine's callers turn into messages for people.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrClosed   = errors.New("ticket is resolved")
)

// send delivers a reply and records it in the conversation's recent history.
func (e *Engine) send(ctx context.Context, channel, chat string, r Reply) error {
	if r.From == "" {
		r.From = "bot"
	}
	e.mu.RLock()
	ch := e.channels[channel]
	e.mu.RUnlock()
	if ch == nil {
		return fmt.Errorf("send to %s: no such channel", channel)
	}
	if !r.Private {
		e.remember(ctx, channel, chat, r.From, r.Text)
	}
	if err := ch.Send(ctx, chat, r); err != nil {
		return fmt.Errorf("send to %s chat: %w", channel, err)
	}
	return nil
}

func (e *Engine) text(lang faq.Lang, key string, data any) string {
	return e.texts.Text(string(lang), key, data)
}

// Handle processes one incoming message: a command, a button, a question, or a message for staff.
func (e *Engine) Handle(ctx context.Context, m Message) error {
	conv, err := e.loadConv(ctx, m)
	if err != nil {
		return err
	}
	lang := conv.lang(m.LangHint, e.matcher().Config().Lang)

	if ok, err := e.allow(ctx, m); err != nil {
		return err
	} else if !ok {
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "rate_limited", nil)})
	}
	if n := utf8.RuneCountInString(m.Text); n > e.cfg.MaxMessage {
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "too_long", map[string]any{"Max": e.cfg.MaxMessage})})
	}
	text := strings.TrimSpace(strings.ToValidUTF8(m.Text, "\uFFFD"))

	if strings.HasPrefix(m.Data, "rate:") {
		return e.rate(ctx, m, conv, lang)
	}
	if conv.Ticket != 0 {
		return e.toTicket(ctx, m, conv, text)
	}
	// The answer to /subscribe is an address: it goes to the mailer, not into the chat's history.
	if m.Data == "" && conv.Await == "email" {
		conv.Await = ""
		if err := e.saveConv(ctx, m, conv); err != nil {
			return err
		}
		if strings.EqualFold(text, "/cancel") {
			return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_cancelled", nil)})
		}
		if !strings.HasPrefix(text, "/") { // another command: the person moved on
			return e.subscribeTo(ctx, m, conv, lang, text)
		}
	}
	if text != "/start" && !strings.HasPrefix(strings.ToLower(text), "/subscribe ") { // /start says nothing to staff; /subscribe ADDR is personal
		e.remember(ctx, m.Channel, m.Chat, "user", text)
	}
	if m.Data != "" {
		return e.button(ctx, m, conv, lang)
	}
	if strings.HasPrefix(text, "/") {
		return e.command(ctx, m, conv, lang, text)
	}
	return e.question(ctx, m, conv, text)
}

func (e *Engine) allow(ctx context.Context, m Message) (bool, error) {
	if e.cfg.RatePerMin <= 0 {
		return true, nil
	}
	limit := redis_rate.Limit{Rate: e.cfg.RatePerMin, Burst: max(1, e.cfg.RatePerMin/2), Period: time.Minute}
	res, err := e.limiter.Allow(ctx, chatKey(rdb.UserRatePrefix, m.Channel, m.User), limit)
	if err != nil {
		return false, fmt.Errorf("rate limit: %w", err)
	}
	return res.Allowed > 0, nil
}

func (e *Engine) command(ctx context.Context, m Message, conv *conv, lang faq.Lang, text string) error {
	name, arg, _ := strings.Cut(text, " ")
	name, _, _ = strings.Cut(strings.ToLower(name), "@") // Telegram: /start@csrdesk_bot
	arg = strings.TrimSpace(arg)
	switch name {
	case "/start":
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "welcome", map[string]any{"Name": m.Name})})
	case "/help":
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "help", nil)})
	case "/topics":
		return e.topics(ctx, m, lang)
	case "/language":
		if l, ok := faq.ParseLang(arg); ok {
			return e.setLang(ctx, m, conv, l)
		}
		var row []Button
		for _, l := range faq.Langs {
			row = append(row, Button{Label: l.Name(), Data: "l:" + string(l)})
		}
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "language_pick", nil), Buttons: [][]Button{row}})
	case "/subscribe":
		if e.subscribe == nil {
			return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_closed", nil)})
		}
		if arg != "" {
			return e.subscribeTo(ctx, m, conv, lang, arg)
		}
		conv.Await = "email"
		if err := e.saveConv(ctx, m, conv); err != nil {
			return err
		}
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_ask", nil)})
	case "/human":
		q := arg
		if q == "" {
			q = conv.LastQ
		}
		return e.escalate(ctx, m, conv, lang, q)
	}
	// Not a command we know: treat it as a question.
	return e.question(ctx, m, conv, text)
}

// subscribeTo passes an address given in the chat to the mailer, which sends the confirmation mail.
func (e *Engine) subscribeTo(ctx context.Context, m Message, conv *conv, lang faq.Lang, email string) error {
	err := e.subscribe(ctx, strings.Trim(email, " <>"), lang, "chat:"+m.Channel, m.Channel+":"+m.Chat, e.text(lang, "subscribe_ask", nil))
	switch {
	case errors.Is(err, ErrInvalid):
		conv.Await = "email" // let them try again
		if err := e.saveConv(ctx, m, conv); err != nil {
			return err
		}
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_bad", nil), Private: true})
	case err != nil:
		e.log.Warn("subscribe from chat", "channel", m.Channel, "err", err)
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_failed", map[string]any{"URL": e.subscribeURL})})
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "subscribe_sent", map[string]any{"Email": strings.ToLower(strings.Trim(email, " <>"))}), Private: true})
}

func (e *Engine) setLang(ctx context.Context, m Message, conv *conv, l faq.Lang) error {
	conv.Lang, conv.Fixed = l, true
	if err := e.saveConv(ctx, m, conv); err != nil {
		return err
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(l, "language_set", nil)})
}

func (e *Engine) topics(ctx context.Context, m Message, lang faq.Lang) error {
	var rows [][]Button
	for _, t := range e.matcher().Base().Topics {
		rows = append(rows, []Button{{Label: t.Name[lang], Data: "t:" + t.ID}})
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "topics", nil), Buttons: rows})
}

// button handles a pressed button. Its data is "kind:arg".
func (e *Engine) button(ctx context.Context, m Message, conv *conv, lang faq.Lang) error {
	kind, arg, _ := strings.Cut(m.Data, ":")
	base := e.matcher().Base()
	switch kind {
	case "a": // show an entry
		if entry := base.Entry(arg); entry != nil && entry.Scoped() {
			conv.LastA = entry.ID
			if err := e.saveConv(ctx, m, conv); err != nil {
				return err
			}
			return e.answer(ctx, m, conv, lang, entry)
		}
	case "t": // list a topic's entries
		for _, t := range base.Topics {
			if t.ID == arg {
				var rows [][]Button
				for _, entry := range base.TopicEntries(t.ID) {
					rows = append(rows, []Button{{Label: entry.In(lang).Questions[0], Data: "a:" + entry.ID}})
				}
				return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "topic", map[string]any{"Topic": t.Name[lang]}), Buttons: rows})
			}
		}
	case "l": // choose the language
		if l, ok := faq.ParseLang(arg); ok {
			return e.setLang(ctx, m, conv, l)
		}
	case "h": // talk to staff
		return e.escalate(ctx, m, conv, lang, conv.LastQ)
	case "y", "n": // feedback on an answer: y:<entry>, n:<entry>
		if base.Entry(arg) == nil {
			break
		}
		if conv.LastA != "" { // said now: a "thanks" that follows does not count again
			conv.LastA = ""
			if err := e.saveConv(ctx, m, conv); err != nil {
				return err
			}
		}
		e.metrics.Feedback.WithLabelValues(map[string]string{"y": "helped", "n": "not_helped"}[kind]).Inc()
		if kind == "y" {
			return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "helped", nil)})
		}
		return e.notHelped(ctx, m, conv, lang, arg)
	}
	e.log.Debug("unknown button", "channel", m.Channel, "data", m.Data)
	return nil
}

// notHelped offers the other likely entries for the last question, then staff.
func (e *Engine) notHelped(ctx context.Context, m Message, conv *conv, lang faq.Lang, shown string) error {
	var rows [][]Button
	if conv.LastQ != "" {
		for _, s := range e.matcher().Alternatives(conv.LastQ, lang, shown) {
			rows = append(rows, []Button{{Label: s.Entry.In(lang).Questions[0], Data: "a:" + s.Entry.ID}})
		}
	}
	rows = append(rows, []Button{{Label: e.text(lang, "btn_staff", nil), Data: "h"}})
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "not_helped", nil), Buttons: rows})
}

func (e *Engine) question(ctx context.Context, m Message, conv *conv, text string) error {
	hint := faq.Hint{App: m.LangHint, Chat: conv.Lang}
	if conv.Fixed { // chosen with /language: stronger evidence than the phone's setting
		hint.App = conv.Lang
	}
	res := e.matcher().Match(text, hint)
	lang := res.Lang
	if conv.Fixed {
		lang = conv.Lang
	}
	conv.Lang = lang
	decision := string(res.Decision)
	smallTalk := res.Decision == faq.Answer && (res.Entry.Kind == faq.KindSmallTalk || res.Entry.Kind == faq.KindThanks)
	// "Can I talk to someone?" is not the question staff need, nor is "hello": keep the one asked before it.
	if res.Reason != faq.ReasonEmpty && !smallTalk && (res.Reason != faq.ReasonHuman || conv.LastQ == "") {
		conv.LastQ = text
	}
	helped := ""
	switch {
	case res.Decision == faq.Answer && res.Entry.Scoped():
		conv.LastA = res.Entry.ID
	case smallTalk:
		decision = "small_talk"
		if res.Entry.Kind == faq.KindThanks {
			helped, conv.LastA = conv.LastA, ""
		}
	case res.Decision == faq.Answer:
		decision = "out_of_scope"
	}
	if err := e.saveConv(ctx, m, conv); err != nil {
		return err
	}
	e.metrics.Questions.WithLabelValues(decision, string(lang)).Inc()
	if helped != "" {
		e.metrics.Feedback.WithLabelValues("helped").Inc()
	}
	switch {
	case smallTalk:
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: res.Entry.In(lang).Answer})
	case res.Decision == faq.Answer && !res.Entry.Scoped():
		return e.send(ctx, m.Channel, m.Chat, Reply{
			Text:    res.Entry.In(lang).Answer,
			Buttons: [][]Button{{{Label: e.text(lang, "btn_staff", nil), Data: "h"}}},
		})
	}
	switch res.Decision {
	case faq.Answer:
		return e.answer(ctx, m, conv, lang, res.Entry)
	case faq.Suggest:
		var rows [][]Button
		for _, s := range res.Suggestions {
			rows = append(rows, []Button{{Label: s.Entry.In(lang).Questions[0], Data: "a:" + s.Entry.ID}})
		}
		rows = append(rows, []Button{{Label: e.text(lang, "btn_staff", nil), Data: "h"}})
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "suggest", nil), Buttons: rows})
	}
	switch res.Reason {
	case faq.ReasonHuman:
		return e.escalate(ctx, m, conv, lang, conv.LastQ)
	case faq.ReasonEmpty:
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "empty", nil)})
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{
		Text:    e.text(lang, "no_match", nil),
		Buttons: [][]Button{{{Label: e.text(lang, "btn_staff", nil), Data: "h"}}},
	})
}

// answer sends an entry's answer with feedback buttons and its related entries as follow-ups.
func (e *Engine) answer(ctx context.Context, m Message, conv *conv, lang faq.Lang, entry *faq.Entry) error {
	rows := [][]Button{
		{{Label: e.text(lang, "btn_helped", nil), Data: "y:" + entry.ID}, {Label: e.text(lang, "btn_not_helped", nil), Data: "n:" + entry.ID}},
		{{Label: e.text(lang, "btn_staff", nil), Data: "h"}},
	}
	base := e.matcher().Base()
	for _, id := range entry.Related {
		if r := base.Entry(id); r != nil && len(rows) < 5 {
			rows = append(rows, []Button{{Label: r.In(lang).Questions[0], Data: "a:" + r.ID}})
		}
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: entry.In(lang).Answer, Buttons: rows})
}
