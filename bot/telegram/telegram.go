// Package telegram connects the help desk to Telegram: updates come in by long polling (or a webhook), become
// bot.Messages, and replies go out through a bot.Outbox at the pace Telegram allows.
package telegram

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/redis/go-redis/v9"

	"csrdesk/bot"
	"csrdesk/faq"
	"csrdesk/internal/rdb"
)

// ChannelName is the name Telegram messages carry in the engine.
const ChannelName = "telegram"

// Config configures the Telegram channel.
type Config struct {
	Token         string
	Endpoint      string // the Bot API's endpoint pattern; default tgbotapi.APIEndpoint
	WebhookURL    string // when set, Telegram pushes updates there instead of being polled
	WebhookSecret string // checked against X-Telegram-Bot-Api-Secret-Token
	PollTimeout   time.Duration
	// Pacing: Telegram allows about one message a second per chat, 20 a minute per group, 30 a second in all.
	PerChat, PerGroup, Overall redis_rate.Limit
}

// DefaultLimits sets Telegram's published limits on cfg.
func (cfg *Config) defaults() {
	if cfg.Endpoint == "" {
		cfg.Endpoint = tgbotapi.APIEndpoint
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = 30 * time.Second
	}
	if cfg.PerChat.Rate == 0 {
		cfg.PerChat = redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Second}
	}
	if cfg.PerGroup.Rate == 0 {
		cfg.PerGroup = redis_rate.Limit{Rate: 20, Burst: 3, Period: time.Minute}
	}
	if cfg.Overall.Rate == 0 {
		cfg.Overall = redis_rate.Limit{Rate: 30, Burst: 30, Period: time.Second}
	}
}

// Bot is the Telegram channel: it receives updates and delivers replies.
type Bot struct {
	cfg     Config
	api     *tgbotapi.BotAPI
	engine  *bot.Engine
	rdb     redis.UniversalClient
	limiter *redis_rate.Limiter
	outbox  *bot.Outbox
	log     *slog.Logger
}

// New connects to the Bot API (it asks getMe who the bot is) and registers the channel with the engine.
func New(cfg Config, engine *bot.Engine, rdb redis.UniversalClient, log *slog.Logger) (*Bot, error) {
	cfg.defaults()
	client := &http.Client{Timeout: cfg.PollTimeout + 15*time.Second}
	api, err := tgbotapi.NewBotAPIWithClient(cfg.Token, cfg.Endpoint, client)
	if err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	b := &Bot{cfg: cfg, api: api, engine: engine, rdb: rdb, limiter: redis_rate.NewLimiter(rdb), log: log}
	b.outbox = bot.NewOutbox(ChannelName, rdb, b, log)
	engine.Register(ChannelName, b.outbox)
	return b, nil
}

// Run delivers replies and, unless a webhook is configured, polls for updates, until ctx is done. It returns
// once the outbox has stopped and the update in hand is handled, so that Redis can be closed after it.
func (b *Bot) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := b.outbox.Run(ctx); err != nil {
			b.log.Error("telegram: replies will not be delivered", "err", err)
		}
	})
	if b.cfg.WebhookURL != "" {
		params := tgbotapi.Params{"url": b.cfg.WebhookURL, "allowed_updates": `["message","callback_query"]`}
		if b.cfg.WebhookSecret != "" {
			params["secret_token"] = b.cfg.WebhookSecret
		}
		if _, err := b.api.MakeRequest("setWebhook", params); err != nil {
			// Logged now rather than returned at shutdown: the outbox goes on delivering replies, and a webhook
			// set by an earlier start may still bring updates.
			b.log.Error("telegram: set webhook; updates may not come until it is set", "err", err)
		} else {
			b.log.Info("telegram: webhook set", "bot", b.api.Self.UserName)
		}
		<-ctx.Done()
		return nil
	}
	if _, err := b.api.MakeRequest("deleteWebhook", nil); err != nil {
		b.log.Warn("telegram: delete webhook", "err", err)
	}
	b.log.Info("telegram: polling for updates", "bot", b.api.Self.UserName)
	return b.poll(ctx)
}

// ctxClient ties the Bot API's requests to a context, which tgbotapi's methods do not take: the long poll
// (PollTimeout, 30 s) must end when ctx does instead of holding a shutdown up.
type ctxClient struct {
	ctx context.Context
	c   tgbotapi.HTTPClient
}

func (c ctxClient) Do(req *http.Request) (*http.Response, error) {
	return c.c.Do(req.WithContext(c.ctx))
}

const offsetKey = rdb.TelegramOffset

// poll reads updates with getUpdates. The offset is kept in Redis and advanced only past handled updates, so a
// restart neither skips nor (thanks to the de-duplication in handle) answers twice.
func (b *Bot) poll(ctx context.Context) error {
	// getUpdates goes through a copy of the API whose requests end with ctx; replies (Deliver) keep the
	// original, so that a message being sent at shutdown is not cut off.
	poller := *b.api
	poller.Client = ctxClient{ctx: ctx, c: b.api.Client}
	// Updates already fetched are handled to the end even when ctx ends meanwhile (a half-handled update would
	// be answered late, by the next process); the rest of the batch is left for it.
	work := context.WithoutCancel(ctx)
	backoff := time.Second
	for ctx.Err() == nil {
		offset, err := b.rdb.Get(ctx, offsetKey).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			// Redis is away: asking Telegram from offset 0 would fetch everything again for nothing.
			b.log.Warn("telegram: read offset, waiting", "err", err)
			bot.Sleep(ctx, time.Second)
			continue
		}
		updates, err := poller.GetUpdates(tgbotapi.UpdateConfig{Offset: offset, Timeout: int(b.cfg.PollTimeout.Seconds()), AllowedUpdates: []string{"message", "callback_query"}})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := backoff
			var te *tgbotapi.Error
			if errors.As(err, &te) && te.RetryAfter > 0 {
				wait = time.Duration(te.RetryAfter) * time.Second
			} else {
				backoff = min(2*backoff, 30*time.Second)
			}
			b.log.Warn("telegram: getUpdates failed, waiting", "wait", wait, "err", err)
			bot.Sleep(ctx, wait)
			continue
		}
		backoff = time.Second
		for _, u := range updates {
			if ctx.Err() != nil {
				return nil // not handled, so not past the saved offset: fetched again on the next start
			}
			if err := b.handle(work, u); err != nil {
				level := slog.LevelError
				if errors.Is(err, bot.ErrInProgress) {
					level = slog.LevelInfo // another process is answering it
				}
				b.log.Log(ctx, level, "telegram: update not handled, will retry", "update_id", u.UpdateID, "err", err)
				bot.Sleep(ctx, time.Second)
				break
			}
			if err := b.rdb.Set(work, offsetKey, u.UpdateID+1, 0).Err(); err != nil {
				b.log.Warn("telegram: save offset", "err", err)
			}
		}
	}
	return nil
}

// WebhookHandler receives updates pushed by Telegram. It answers 500 when an update could not be handled, so
// that Telegram delivers it again.
func (b *Bot) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.cfg.WebhookSecret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Telegram-Bot-Api-Secret-Token")), []byte(b.cfg.WebhookSecret)) != 1 {
			http.Error(w, "wrong secret token", http.StatusUnauthorized)
			return
		}
		var u tgbotapi.Update
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&u); err != nil {
			http.Error(w, "not an update", http.StatusBadRequest)
			return
		}
		if err := b.handle(r.Context(), u); err != nil {
			b.log.Error("telegram: webhook update not handled", "update_id", u.UpdateID, "err", err)
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// handle turns an update into a message for the engine, once per update id even when Telegram (or a second
// process polling the same bot) delivers it again.
func (b *Bot) handle(ctx context.Context, u tgbotapi.Update) error {
	m, ok := b.message(u)
	if !ok {
		return nil
	}
	return bot.Once(ctx, b.rdb, rdb.TelegramUpdatePrefix+strconv.Itoa(u.UpdateID), func(ctx context.Context) error {
		if u.CallbackQuery != nil {
			// Stop the button's spinner; best effort, the answer itself comes as a message.
			if _, err := b.api.Request(tgbotapi.NewCallback(u.CallbackQuery.ID, "")); err != nil {
				b.log.Debug("telegram: answer callback query", "err", err)
			}
		}
		return b.engine.Handle(ctx, m)
	})
}

// message converts an update. It reports false for updates the bot ignores: other kinds, group messages not
// addressed to it (neither mentioning it nor replying to it), and updates without the chat or the sender that
// Telegram always sends (a forged or damaged post to the webhook), since there would be nobody to answer.
func (b *Bot) message(u tgbotapi.Update) (bot.Message, bool) {
	switch {
	case u.CallbackQuery != nil && u.CallbackQuery.From != nil && u.CallbackQuery.Message != nil && u.CallbackQuery.Message.Chat != nil:
		q := u.CallbackQuery
		return bot.Message{
			Channel: ChannelName, Chat: strconv.FormatInt(q.Message.Chat.ID, 10), User: strconv.FormatInt(q.From.ID, 10),
			Name: q.From.FirstName, LangHint: lang(q.From.LanguageCode), Data: q.Data,
		}, true
	case u.Message != nil && u.Message.Text != "" && u.Message.From != nil && u.Message.Chat != nil:
		msg := u.Message
		text := msg.Text
		if !msg.Chat.IsPrivate() {
			mention := "@" + b.api.Self.UserName
			replyToMe := msg.ReplyToMessage != nil && msg.ReplyToMessage.From != nil && msg.ReplyToMessage.From.ID == b.api.Self.ID
			if !strings.Contains(text, mention) && !replyToMe {
				return bot.Message{}, false
			}
			text = strings.TrimSpace(strings.ReplaceAll(text, mention, ""))
		}
		return bot.Message{
			Channel: ChannelName, Chat: strconv.FormatInt(msg.Chat.ID, 10), User: strconv.FormatInt(msg.From.ID, 10),
			Name: msg.From.FirstName, LangHint: lang(msg.From.LanguageCode), Text: text,
		}, true
	}
	return bot.Message{}, false
}

func lang(code string) faq.Lang {
	l, _ := faq.ParseLang(code)
	return l
}

// Deliver sends a reply to a chat, split to Telegram's size limit, at Telegram's pace. It implements
// bot.Sender: a 429 becomes bot.RetryAfter, a chat that is gone or has blocked the bot bot.Permanent.
func (b *Bot) Deliver(ctx context.Context, chat string, r bot.Reply) error {
	id, err := strconv.ParseInt(chat, 10, 64)
	if err != nil {
		return &bot.Permanent{Err: fmt.Errorf("telegram chat %q is not a number", chat)}
	}
	parts := split(r.Text, maxText-200)
	for i, part := range parts {
		if err := b.pace(ctx, id); err != nil {
			return err
		}
		msg := tgbotapi.NewMessage(id, toHTML(part))
		msg.ParseMode = tgbotapi.ModeHTML
		msg.DisableWebPagePreview = true
		if i == len(parts)-1 && len(r.Buttons) > 0 {
			msg.ReplyMarkup = keyboard(r.Buttons)
		}
		if _, err := b.api.Send(msg); err != nil {
			return classify(err)
		}
	}
	return nil
}

func keyboard(rows [][]bot.Button) tgbotapi.InlineKeyboardMarkup {
	var kb [][]tgbotapi.InlineKeyboardButton
	for _, row := range rows {
		var r []tgbotapi.InlineKeyboardButton
		for _, btn := range row {
			r = append(r, tgbotapi.NewInlineKeyboardButtonData(btn.Label, btn.Data))
		}
		kb = append(kb, r)
	}
	return tgbotapi.NewInlineKeyboardMarkup(kb...)
}

// classify maps a Bot API error to what the outbox should do with it.
func classify(err error) error {
	var te *tgbotapi.Error
	if !errors.As(err, &te) {
		return err // network trouble: retry
	}
	switch {
	case te.Code == http.StatusTooManyRequests || te.RetryAfter > 0:
		return &bot.RetryAfter{Wait: time.Duration(max(te.RetryAfter, 1)) * time.Second}
	case te.Code == http.StatusForbidden, te.Code == http.StatusBadRequest:
		return &bot.Permanent{Err: err} // blocked by the user, chat gone, or a message Telegram will never take
	}
	return err
}

// pace waits until sending to chat keeps within Telegram's limits, shared by every process through Redis.
func (b *Bot) pace(ctx context.Context, chat int64) error {
	limits := []struct {
		key   string
		limit redis_rate.Limit
	}{
		{rdb.TelegramPacePrefix + "all", b.cfg.Overall},
		{rdb.TelegramPacePrefix + "chat:" + strconv.FormatInt(chat, 10), b.cfg.PerChat},
	}
	if chat < 0 { // groups have negative ids
		limits = append(limits, struct {
			key   string
			limit redis_rate.Limit
		}{rdb.TelegramPacePrefix + "group:" + strconv.FormatInt(chat, 10), b.cfg.PerGroup})
	}
	for _, l := range limits {
		for {
			res, err := b.limiter.Allow(ctx, l.key, l.limit)
			if err != nil {
				return err
			}
			if res.Allowed > 0 {
				break
			}
			bot.Sleep(ctx, res.RetryAfter)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

var _ bot.Sender = (*Bot)(nil)
