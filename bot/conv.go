package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/faq"
	"csrdesk/internal/rdb"
)

// chatKey is the key of one chat under prefix (one of rdb's).
func chatKey(prefix, channel, chat string) string { return prefix + channel + ":" + chat }

// conv is the state of one conversation: kept for Config.StateTTL after its last message, except the open
// ticket, which is kept until the ticket is resolved.
type conv struct {
	Lang   faq.Lang // the language of the conversation
	Fixed  bool     // chosen with /language: detection no longer changes it
	LastQ  string   // the last question asked, for "did not help" and "talk to staff"
	LastA  string   // the entry last answered, until the person says whether it helped ("thanks" counts)
	Ticket int64    // the open ticket, or 0
	Await  string   // what the next message is expected to be: "email" after /subscribe, or empty
}

// lang is the language to speak before a question says otherwise: the conversation's, else the chat app's, else
// the platform's default.
func (c *conv) lang(app, def faq.Lang) faq.Lang {
	switch {
	case c.Lang != "":
		return c.Lang
	case app != "":
		return app
	}
	return def
}

func (e *Engine) loadConv(ctx context.Context, m Message) (*conv, error) {
	pipe := e.rdb.Pipeline()
	h := pipe.HGetAll(ctx, chatKey(rdb.ConvPrefix, m.Channel, m.Chat))
	t := pipe.Get(ctx, chatKey(rdb.ChatTicketPrefix, m.Channel, m.Chat))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load conversation: %w", err)
	}
	v := h.Val()
	c := &conv{LastQ: v["lastq"], LastA: v["lasta"], Fixed: v["fixed"] == "1", Await: v["await"]}
	if l, ok := faq.ParseLang(v["lang"]); ok {
		c.Lang = l
	}
	c.Ticket, _ = strconv.ParseInt(t.Val(), 10, 64)
	return c, nil
}

func (e *Engine) saveConv(ctx context.Context, m Message, c *conv) error {
	k := chatKey(rdb.ConvPrefix, m.Channel, m.Chat)
	fixed := "0"
	if c.Fixed {
		fixed = "1"
	}
	pipe := e.rdb.TxPipeline()
	pipe.HSet(ctx, k, "lang", string(c.Lang), "fixed", fixed, "lastq", c.LastQ, "lasta", c.LastA, "await", c.Await)
	pipe.Expire(ctx, k, e.cfg.StateTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save conversation: %w", err)
	}
	return nil
}

// LogEntry is one message of a conversation or ticket.
type LogEntry struct {
	At   time.Time `json:"at"`
	From string    `json:"from"` // user, bot, staff, note or event
	Name string    `json:"name,omitempty"`
	Via  string    `json:"via,omitempty"` // the staff face a staff entry came from
	Text string    `json:"text"`
}

// historyLen is how many recent messages of a conversation are kept, to give staff the context of a handover.
const historyLen = 20

// remember adds a message to the conversation's recent history. History is a courtesy to staff: failing to
// record it must not fail the conversation, so errors are only logged.
func (e *Engine) remember(ctx context.Context, channel, chat, from, text string) {
	if text == "" {
		return
	}
	data, _ := json.Marshal(LogEntry{At: e.now().UTC(), From: from, Text: text})
	k := chatKey(rdb.HistoryPrefix, channel, chat)
	pipe := e.rdb.Pipeline()
	pipe.RPush(ctx, k, data)
	pipe.LTrim(ctx, k, -historyLen, -1)
	pipe.Expire(ctx, k, e.cfg.StateTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		e.log.Warn("record conversation history", "channel", channel, "err", err)
	}
}

// forgetScript blanks the text of the entries of a log (LogEntry JSON) that mention ARGV[1], in one step, as new
// entries may arrive (and old ones be trimmed) meanwhile.
var forgetScript = redis.NewScript(`
local n = 0
for i, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.find(string.lower(raw), ARGV[1], 1, true) then
    local e = cjson.decode(raw)
    e['text'] = ARGV[2]
    redis.call('LSET', KEYS[1], i - 1, cjson.encode(e))
    n = n + 1
  end
end
return n`)

// erased replaces what someone asked to have erased.
const erased = "[erased on request]"

// Forget blanks out, in every conversation history and ticket, the messages and questions that mention an
// address, when its owner asks to be erased. Entries stay, so a ticket still reads in order. It returns how many
// it changed.
func Forget(ctx context.Context, c redis.UniversalClient, email string) (int, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return 0, nil
	}
	changed := 0
	logs := func(ctx context.Context, c *redis.Client, k string) error {
		n, err := forgetScript.Run(ctx, c, []string{k}, email, erased).Int()
		changed += n
		return err
	}
	for _, pattern := range []string{rdb.HistoryPrefix + "*", rdb.TicketPrefix + "*:log"} {
		if err := rdb.Scan(ctx, c, pattern, "list", logs); err != nil {
			return changed, err
		}
	}
	err := rdb.Scan(ctx, c, rdb.TicketPrefix+"*", "hash", func(ctx context.Context, c *redis.Client, k string) error {
		if q, err := c.HGet(ctx, k, "question").Result(); err == nil && strings.Contains(strings.ToLower(q), email) {
			changed++
			return c.HSet(ctx, k, "question", erased).Err()
		}
		return nil
	})
	return changed, err
}
