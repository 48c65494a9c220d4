package slack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"

	"csrdesk/bot"
	"csrdesk/internal/rdb"
)

// The staff console follows the ticket event stream as a consumer group, so that with several csrdesk processes
// each event is posted once, and an event is acknowledged only once Slack has it (a process that dies leaves it
// to another).

const consoleGroup = "slack-console"

func cardKey(ticket int64) string { return rdb.SlackCardPrefix + strconv.FormatInt(ticket, 10) }
func threadKey(ts string) string  { return rdb.SlackThreadPrefix + ts }

func (s *Slack) console(ctx context.Context) {
	if err := rdb.EnsureGroup(ctx, s.rdb, bot.EventsStream, consoleGroup, "$"); err != nil {
		s.log.Error("slack console: cannot follow ticket events", "err", err)
		return
	}
	consumer := rdb.Consumer()
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		var msgs []redis.XMessage
		if time.Since(lastClaim) > 30*time.Second {
			lastClaim = time.Now()
			claimed, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: bot.EventsStream, Group: consoleGroup, Consumer: consumer, MinIdle: time.Minute, Start: "0", Count: 100}).Result()
			if err == nil {
				msgs = claimed
			}
		}
		if len(msgs) == 0 {
			res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: consoleGroup, Consumer: consumer, Streams: []string{bot.EventsStream, ">"}, Count: 50, Block: 2 * time.Second}).Result()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, redis.Nil):
				continue
			case err != nil:
				s.log.Warn("slack console: read events", "err", err)
				bot.Sleep(ctx, time.Second)
				continue
			}
			for _, st := range res {
				msgs = append(msgs, st.Messages...)
			}
		}
		for _, m := range msgs {
			ev := bot.ParseEvent(m)
			for attempt, backoff := 1, time.Second; ctx.Err() == nil; attempt++ {
				err := s.mirror(ctx, ev)
				if err == nil {
					break
				}
				var rl *slack.RateLimitedError
				if errors.As(err, &rl) {
					bot.Sleep(ctx, rl.RetryAfter)
					continue
				}
				if attempt == 1 || attempt%10 == 0 {
					s.log.Warn("slack console: posting failed, retrying", "ticket_id", ev.Ticket, "event", ev.Type, "attempt", attempt, "err", err)
				}
				bot.Sleep(ctx, backoff)
				backoff = min(2*backoff, time.Minute)
			}
			if ctx.Err() != nil {
				return
			}
			s.rdb.XAck(ctx, bot.EventsStream, consoleGroup, m.ID)
		}
	}
}

// mirror shows one ticket event in Slack. It is safe to repeat: a card is posted only once.
func (s *Slack) mirror(ctx context.Context, ev bot.Event) error {
	if ev.Type == "opened" {
		return s.postCard(ctx, ev.Ticket)
	}
	ts, err := s.rdb.Get(ctx, cardKey(ev.Ticket)).Result()
	if errors.Is(err, redis.Nil) {
		return nil // a ticket from before the console existed
	}
	if err != nil {
		return err
	}
	e := ev.Entry
	fromSlack := e.Via == "slack"
	var line string
	switch ev.Type {
	case "message":
		line = fmt.Sprintf("*%s*: %s", escape(nameOr(e.Name, "the person")), escape(e.Text))
	case "reply":
		if fromSlack {
			return nil // already in the thread
		}
		line = fmt.Sprintf("*%s* (staff inbox): %s", escape(e.Name), escape(e.Text))
	case "note":
		if fromSlack {
			return nil
		}
		line = fmt.Sprintf(":memo: note by *%s* (staff inbox): %s", escape(e.Name), escape(e.Text))
	case "claimed", "resolved":
		if err := s.updateCard(ctx, ev.Ticket, ts); err != nil {
			return err
		}
		line = fmt.Sprintf("_%s_", escape(e.Text))
	case "reminder":
		line = ":alarm_clock: " + escape(e.Text) + ": who takes it?"
	case "rated":
		line = ":star: " + escape(e.Text)
	default:
		return nil
	}
	return s.post(ctx, s.cfg.StaffChannel, ts, line, nil)
}

func nameOr(name, alt string) string {
	if name == "" {
		return alt
	}
	return name
}

func (s *Slack) post(ctx context.Context, channel, threadTS, text string, blocks []slack.Block) error {
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if threadTS != "" {
		opts = append(opts, slack.MsgOptionTS(threadTS))
	}
	if blocks != nil {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	_, _, err := s.api.PostMessageContext(ctx, channel, opts...)
	return err
}

// card builds a ticket's card: who asked, from where, in which language, the question, the bot's best guesses,
// its state, and the Claim and Resolve buttons while it is open.
func (s *Slack) card(t *bot.Ticket) (string, []slack.Block) {
	summary := fmt.Sprintf("Ticket #%d from %s via %s (%s): %s", t.ID, nameOr(t.Name, "someone"), t.Channel, t.Lang, t.Question)
	state := map[string]string{bot.StateNew: ":red_circle: new, unclaimed", bot.StateClaimed: ":large_yellow_circle: claimed by " + escape(t.Assignee),
		bot.StateResolved: ":white_check_mark: resolved by " + escape(t.Assignee)}[t.State]
	fields := []*slack.TextBlockObject{
		slack.NewTextBlockObject(slack.MarkdownType, "*From*\n"+escape(nameOr(t.Name, "someone"))+" via "+escape(t.Channel), false, false),
		slack.NewTextBlockObject(slack.MarkdownType, "*Language*\n"+escape(string(t.Lang)), false, false),
		slack.NewTextBlockObject(slack.MarkdownType, "*State*\n"+state, false, false),
	}
	var guesses []string
	for _, g := range s.matcher().Alternatives(t.Question, t.Lang, "") {
		guesses = append(guesses, fmt.Sprintf("• %s (`%s`, %.2f)", escape(g.Entry.In(t.Lang).Questions[0]), g.Entry.ID, g.Score))
	}
	guessText := "_none: the knowledge base has nothing close_"
	if len(guesses) > 0 {
		guessText = strings.Join(guesses, "\n")
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprintf("*Ticket #%d*\n>%s", t.ID, clip(escape(t.Question), 2800)), false, false), fields, nil),
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*The bot's best guesses*\n"+guessText, false, false), nil, nil),
	}
	if t.State != bot.StateResolved {
		idText := strconv.FormatInt(t.ID, 10)
		var els []slack.BlockElement
		if t.State == bot.StateNew {
			els = append(els, slack.NewButtonBlockElement("ticket:claim", idText, slack.NewTextBlockObject(slack.PlainTextType, "Claim", false, false)).WithStyle(slack.StylePrimary))
		}
		els = append(els, slack.NewButtonBlockElement("ticket:resolve", idText, slack.NewTextBlockObject(slack.PlainTextType, "Resolve", false, false)))
		blocks = append(blocks, slack.NewActionBlock("ticket", els...))
	}
	return summary, blocks
}

func (s *Slack) postCard(ctx context.Context, id int64) error {
	if n, err := s.rdb.Exists(ctx, cardKey(id)).Result(); err != nil || n > 0 {
		return err // posted already (before a crash, say)
	}
	t, _, err := s.engine.Ticket(ctx, id)
	if err != nil {
		return err
	}
	text, blocks := s.card(t)
	_, ts, err := s.api.PostMessageContext(ctx, s.cfg.StaffChannel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return err
	}
	// Two slots on a Cluster, so in order (rdb.TxPipeline): the thread first, so that a failure between the two
	// leaves the card unrecorded and posted again later, rather than a card whose thread reaches no ticket.
	pipe := rdb.TxPipeline(s.rdb)
	pipe.Set(ctx, threadKey(ts), id, 0)
	pipe.Set(ctx, cardKey(id), ts, 0)
	_, err = pipe.Exec(ctx)
	return err
}

func (s *Slack) updateCard(ctx context.Context, id int64, ts string) error {
	t, _, err := s.engine.Ticket(ctx, id)
	if err != nil {
		return err
	}
	text, blocks := s.card(t)
	_, _, _, err = s.api.UpdateMessageContext(ctx, s.cfg.StaffChannel, ts, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	return err
}

var _ bot.Sender = (*Slack)(nil)
