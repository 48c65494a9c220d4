// Package slack connects the help desk to Slack in two roles. Enterprises can ask the bot in a direct message or
// by mentioning it in a channel, like any other chat. And platform staff work tickets from a staff channel: every
// new ticket, from any channel, is posted there as a card with Claim and Resolve buttons; its thread is the
// conversation, where staff replies reach the person on their own channel and "note:" replies stay internal.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"csrdesk/bot"
	"csrdesk/faq"
	"csrdesk/internal/rdb"
)

// ChannelName is the name Slack messages carry in the engine.
const ChannelName = "slack"

// Config configures Slack.
type Config struct {
	BotToken      string // xoxb-...
	AppToken      string // xapp-...: when set, events and button presses come over Socket Mode
	SigningSecret string // verifies the Events API and interactivity requests (without Socket Mode)
	APIURL        string // the Web API, default https://slack.com/api/
	StaffChannel  string // the channel id where tickets are posted; empty for no staff console
}

// Slack is the Slack channel and staff console.
type Slack struct {
	cfg       Config
	api       *slack.Client
	engine    *bot.Engine
	matcher   func() *faq.Matcher
	rdb       redis.UniversalClient
	outbox    *bot.Outbox
	log       *slog.Logger
	botUserID string
}

// New connects to the Web API (auth.test tells who the bot is) and registers the channel with the engine.
func New(cfg Config, engine *bot.Engine, matcher func() *faq.Matcher, rdb redis.UniversalClient, log *slog.Logger) (*Slack, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = slack.APIURL
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	opts := []slack.Option{slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(&http.Client{Timeout: 20 * time.Second})}
	if cfg.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(cfg.AppToken))
	}
	api := slack.New(cfg.BotToken, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	auth, err := api.AuthTestContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("slack: auth.test: %w", err)
	}
	s := &Slack{cfg: cfg, api: api, engine: engine, matcher: matcher, rdb: rdb, log: log, botUserID: auth.UserID}
	s.outbox = bot.NewOutbox(ChannelName, rdb, s, log)
	engine.Register(ChannelName, s.outbox)
	return s, nil
}

// Run delivers replies, runs the staff console when there is a staff channel, and receives events over Socket
// Mode when there is an app token, until ctx is done. It returns once all of them have stopped, so that Redis
// can be closed after it.
func (s *Slack) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := s.outbox.Run(ctx); err != nil {
			s.log.Error("slack: replies will not be delivered", "err", err)
		}
	})
	if s.cfg.StaffChannel != "" {
		wg.Go(func() { s.console(ctx) })
	}
	if s.cfg.AppToken != "" {
		s.socketMode(ctx)
	}
	<-ctx.Done()
	return nil
}

// socketMode receives events and button presses over the WebSocket that Socket Mode opens to Slack, so that
// csrdesk needs no public address. Each envelope is handled, then acknowledged, like its HTTP twin. It returns
// once the connection and the envelopes in hand are done.
func (s *Slack) socketMode(ctx context.Context) {
	client := socketmode.New(s.api)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// RunContext reconnects by itself and returns only when ctx ends or the token is refused.
		if err := client.RunContext(ctx); ctx.Err() == nil {
			s.log.Error("slack: socket mode stopped", "err", err)
		}
	})
	// ack acknowledges an envelope once handled; at shutdown the connection is going, and an envelope not
	// acknowledged comes again (to another process), where it is handled once.
	ack := func(req *socketmode.Request) {
		if req == nil {
			return
		}
		if err := client.AckCtx(ctx, req.EnvelopeID, nil); err != nil && ctx.Err() == nil {
			s.log.Warn("slack: socket mode: acknowledge", "err", err)
		}
	}
	for {
		var evt socketmode.Event
		select {
		case <-ctx.Done():
			return
		case evt = <-client.Events:
		}
		switch evt.Type {
		case socketmode.EventTypeEventsAPI:
			ev, _ := evt.Data.(slackevents.EventsAPIEvent)
			outer, _ := ev.Data.(*slackevents.EventsAPICallbackEvent)
			wg.Go(func() {
				// Acknowledged once handled: an event not acknowledged comes again.
				if outer != nil && s.handleNow("event", func(ctx context.Context) error { return s.handleEvent(ctx, outer.EventID, ev.InnerEvent) }) != nil {
					return
				}
				ack(evt.Request)
			})
		case socketmode.EventTypeInteractive:
			ic, _ := evt.Data.(slack.InteractionCallback)
			wg.Go(func() {
				if s.handleNow("button", func(ctx context.Context) error { return s.handleInteraction(ctx, ic) }) == nil {
					ack(evt.Request)
				}
			})
		case socketmode.EventTypeInvalidAuth:
			s.log.Error("slack: socket mode: the app token is refused (SLACK_APP_TOKEN)")
		case socketmode.EventTypeConnectionError:
			s.log.Warn("slack: socket mode: connection failed, retrying")
		case socketmode.EventTypeConnected:
			s.log.Info("slack: socket mode connected")
		}
	}
}

// handleNow handles one event or button press within the three seconds Slack waits for an acknowledgement, so
// that it is acknowledged only once handled: when it cannot be (Redis restarting, say), Slack sends an event
// again, and shows the person who pressed a button that it did not work.
func (s *Slack) handleNow(what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	err := fn(ctx)
	switch {
	case errors.Is(err, bot.ErrInProgress):
		s.log.Info("slack: "+what+" is being handled by another delivery; Slack will send it again", "err", err)
	case err != nil:
		s.log.Error("slack: "+what+" not handled", "err", err)
	}
	return err
}

// slackMrkdwn is Slack's markup.
var slackMrkdwn = bot.Markup{
	Escape: escape,
	Bold:   [2]string{"*", "*"},
	Italic: [2]string{"_", "_"},
	Code:   [2]string{"`", "`"},
	Pre:    [2]string{"```\n", "```"},
	Link:   func(url, label string) string { return "<" + url + "|" + strings.ReplaceAll(label, "|", "¦") + ">" },
}

// escape makes text safe in mrkdwn, where &, < and > are control characters.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func toMrkdwn(md string) string { return bot.Render(md, slackMrkdwn) }

// Deliver posts a reply in a Slack conversation, with the engine's buttons as Block Kit. It implements
// bot.Sender: a rate limit becomes bot.RetryAfter, a conversation the bot cannot post to bot.Permanent.
func (s *Slack) Deliver(ctx context.Context, chat string, r bot.Reply) error {
	text := toMrkdwn(r.Text)
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, clip(text, 2900), false, false), nil, nil)}
	n := 0
	for _, row := range r.Buttons {
		var els []slack.BlockElement
		for _, b := range row {
			els = append(els, slack.NewButtonBlockElement("csrdesk:"+strconv.Itoa(n), b.Data, slack.NewTextBlockObject(slack.PlainTextType, clip(b.Label, 75), true, false)))
			n++
		}
		blocks = append(blocks, slack.NewActionBlock("", els...))
	}
	_, _, err := s.api.PostMessageContext(ctx, chat, slack.MsgOptionText(clip(text, 3000), false), slack.MsgOptionBlocks(blocks...))
	return classify(err)
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// classify maps a Web API error to what the outbox should do with it.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &bot.RetryAfter{Wait: max(rl.RetryAfter, time.Second)}
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "channel_not_found", "not_in_channel", "is_archived", "account_inactive", "invalid_auth", "msg_too_long", "invalid_blocks", "no_text":
			return &bot.Permanent{Err: err}
		}
	}
	return err // network trouble or a 5xx: retry
}

// EventsHandler receives the Events API: it verifies the request, handles the event and only then acknowledges
// it (Slack sends it again when the answer is not 200 within 3 seconds), once however often Slack sends it.
func (s *Slack) EventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.verified(w, r)
		if !ok {
			return
		}
		ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
		if err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		if ev.Type == slackevents.URLVerification {
			var ch slackevents.ChallengeResponse
			json.Unmarshal(body, &ch)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, ch.Challenge)
			return
		}
		outer, _ := ev.Data.(*slackevents.EventsAPICallbackEvent)
		if outer != nil && s.handleNow("event", func(ctx context.Context) error { return s.handleEvent(ctx, outer.EventID, ev.InnerEvent) }) != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// verified reads the body and checks Slack's signature on it.
func (s *Slack) verified(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return nil, false
	}
	sv, err := slack.NewSecretsVerifier(r.Header, s.cfg.SigningSecret)
	if err == nil {
		sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// handleEvent handles one event, once per event id.
func (s *Slack) handleEvent(ctx context.Context, eventID string, inner slackevents.EventsAPIInnerEvent) error {
	if eventID == "" {
		return s.event(ctx, inner)
	}
	return bot.Once(ctx, s.rdb, rdb.SlackEventPrefix+eventID, func(ctx context.Context) error { return s.event(ctx, inner) })
}

func (s *Slack) event(ctx context.Context, inner slackevents.EventsAPIInnerEvent) error {
	switch ev := inner.Data.(type) {
	case *slackevents.MessageEvent:
		if ev.BotID != "" || ev.User == "" || ev.User == s.botUserID || ev.SubType != "" {
			return nil // our own messages, other bots, edits and joins
		}
		if ev.Channel == s.cfg.StaffChannel {
			if ev.ThreadTimeStamp != "" {
				return s.staffMessage(ctx, ev.ThreadTimeStamp, ev.User, ev.Text)
			}
			return nil
		}
		if ev.ChannelType == "im" {
			return s.engine.Handle(ctx, bot.Message{Channel: ChannelName, Chat: ev.Channel, User: ev.User, Name: s.userName(ctx, ev.User), Text: s.plain(ev.Text)})
		}
	case *slackevents.AppMentionEvent:
		if ev.BotID != "" || ev.Channel == s.cfg.StaffChannel {
			return nil
		}
		return s.engine.Handle(ctx, bot.Message{Channel: ChannelName, Chat: ev.Channel, User: ev.User, Name: s.userName(ctx, ev.User), Text: s.plain(ev.Text)})
	}
	return nil
}

var mention = regexp.MustCompile(`<@[A-Z0-9]+>`)

// plain turns a Slack message into the text a person meant: mentions of the bot removed, Slack's escapes undone.
func (s *Slack) plain(text string) string {
	text = mention.ReplaceAllStringFunc(text, func(m string) string {
		if m == "<@"+s.botUserID+">" {
			return ""
		}
		return m
	})
	return strings.TrimSpace(strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text))
}

// InteractionsHandler receives button presses: the engine's buttons in a person's conversation, and Claim and
// Resolve on the staff cards.
func (s *Slack) InteractionsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.verified(w, r)
		if !ok {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ic, err := slack.InteractionCallbackParse(r)
		if err != nil {
			http.Error(w, "not an interaction", http.StatusBadRequest)
			return
		}
		if s.handleNow("button", func(ctx context.Context) error { return s.handleInteraction(ctx, ic) }) != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (s *Slack) handleInteraction(ctx context.Context, ic slack.InteractionCallback) error {
	if ic.Type != slack.InteractionTypeBlockActions {
		return nil
	}
	for _, a := range ic.ActionCallback.BlockActions {
		switch {
		case strings.HasPrefix(a.ActionID, "csrdesk:"):
			if err := s.engine.Handle(ctx, bot.Message{Channel: ChannelName, Chat: ic.Channel.ID, User: ic.User.ID, Name: ic.User.Name, Data: a.Value}); err != nil {
				return err
			}
		case a.ActionID == "ticket:claim" || a.ActionID == "ticket:resolve":
			id, err := strconv.ParseInt(a.Value, 10, 64)
			if err != nil {
				return nil
			}
			staff := bot.Staff{Name: s.userName(ctx, ic.User.ID), Via: "slack"}
			if a.ActionID == "ticket:claim" {
				err = s.engine.Claim(ctx, id, staff)
			} else {
				err = s.engine.Resolve(ctx, id, staff)
			}
			switch {
			case errors.Is(err, bot.ErrNotFound), errors.Is(err, bot.ErrClosed):
				// No such ticket, or Claim on one resolved meanwhile (its card says so): pressing again cannot
				// help, so this is no failure for Slack to report.
				s.log.Info("slack: ticket button ignored", "ticket_id", id, "action", a.ActionID, "err", err)
			case err != nil:
				return err
			}
		}
	}
	return nil
}

// userName returns a Slack user's display name, cached for a day; the user id when Slack cannot tell.
func (s *Slack) userName(ctx context.Context, id string) string {
	k := rdb.SlackUserPrefix + id
	if name, err := s.rdb.Get(ctx, k).Result(); err == nil {
		return name
	}
	u, err := s.api.GetUserInfoContext(ctx, id)
	if err != nil {
		s.log.Warn("slack: users.info", "err", err)
		return id
	}
	name := u.Profile.DisplayName
	if name == "" {
		name = u.RealName
	}
	if name == "" {
		name = u.Name
	}
	s.rdb.Set(ctx, k, name, 24*time.Hour)
	return name
}

// staffMessage is a reply in a ticket's thread: it goes to the person (or stays internal with "note:").
func (s *Slack) staffMessage(ctx context.Context, threadTS, user, text string) error {
	id, err := s.rdb.Get(ctx, threadKey(threadTS)).Int64()
	if errors.Is(err, redis.Nil) {
		return nil // a thread that is not a ticket's
	}
	if err != nil {
		return err
	}
	text = s.plain(text)
	if text == "" {
		return nil // empty, or only a mention of the bot: nothing to pass on, and nothing for Slack to send again
	}
	err = s.engine.StaffReply(ctx, id, bot.Staff{Name: s.userName(ctx, user), Via: "slack"}, text)
	if errors.Is(err, bot.ErrClosed) {
		return s.post(ctx, s.cfg.StaffChannel, threadTS, ":no_entry: This ticket is resolved: the person can no longer be answered here.", nil)
	}
	return err
}
