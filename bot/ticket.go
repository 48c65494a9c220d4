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

// Ticket states.
const (
	StateNew      = "new"
	StateClaimed  = "claimed"
	StateResolved = "resolved"
)

// Ticket is a question handed over to staff.
type Ticket struct {
	ID         int64
	Channel    string
	Chat       string
	User       string
	Name       string
	Lang       faq.Lang
	Question   string
	State      string
	Assignee   string
	Created    time.Time
	Claimed    time.Time
	FirstReply time.Time
	Resolved   time.Time
	Reminded   time.Time
	Rating     int
}

func ticketKey(id int64) string    { return rdb.TicketPrefix + strconv.FormatInt(id, 10) }
func ticketLogKey(id int64) string { return ticketKey(id) + ":log" }

const (
	openKey   = rdb.TicketsOpen // sorted by creation time
	allKey    = rdb.TicketsAll
	seqKey    = rdb.TicketsSeq
	eventsKey = EventsStream // ticket events, for staff faces in any process
)

func unixMilli(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func parseMilli(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func ticketFromHash(v map[string]string) *Ticket {
	if len(v) == 0 {
		return nil
	}
	t := &Ticket{
		Channel: v["channel"], Chat: v["chat"], User: v["user"], Name: v["name"], Lang: faq.Lang(v["lang"]),
		Question: v["question"], State: v["state"], Assignee: v["assignee"],
		Created: parseMilli(v["created"]), Claimed: parseMilli(v["claimed"]), FirstReply: parseMilli(v["first_reply"]),
		Resolved: parseMilli(v["resolved"]), Reminded: parseMilli(v["reminded"]),
	}
	t.ID, _ = strconv.ParseInt(v["id"], 10, 64)
	t.Rating, _ = strconv.Atoi(v["rating"])
	return t
}

// Staff is who acts on a ticket, and through which face ("inbox", "slack"), so that a face does not echo what
// came from itself.
type Staff struct {
	Name string
	Via  string
}

// Event is an entry of the ticket event stream that staff faces follow.
type Event struct {
	ID     string // the stream entry's id
	Type   string // opened, message, reply, note, claimed, resolved, rated, reminder
	Ticket int64
	Entry  LogEntry
}

// event records something that happened to a ticket: in its log, and in the event stream that staff faces follow.
func (e *Engine) event(ctx context.Context, pipe redis.Pipeliner, id int64, kind string, le LogEntry) {
	le.At = e.now().UTC()
	data, _ := json.Marshal(le)
	pipe.RPush(ctx, ticketLogKey(id), data)
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: eventsKey, MaxLen: 10000, Approx: true, Values: map[string]any{"type": kind, "ticket": id, "entry": data}})
	pipe.Publish(ctx, NotifyChannel, EventsTopic)
}

// ParseEvent reads an entry of the event stream.
func ParseEvent(m redis.XMessage) Event {
	ev := Event{ID: m.ID}
	ev.Type, _ = m.Values["type"].(string)
	ev.Ticket, _ = strconv.ParseInt(fmt.Sprint(m.Values["ticket"]), 10, 64)
	if data, ok := m.Values["entry"].(string); ok {
		json.Unmarshal([]byte(data), &ev.Entry)
	}
	return ev
}

// Streams that pages follow (the ticket events, each web chat) are read with XRANGE when a notice on
// NotifyChannel names them, instead of each open page holding a Redis connection in a blocking XREAD.
const (
	NotifyChannel = rdb.Notify
	EventsTopic   = "events" // the notice for the ticket event stream; web chats are named by their id
	EventsStream  = rdb.TicketEvents
)

// escalate opens a ticket for the conversation, or says it already has one.
func (e *Engine) escalate(ctx context.Context, m Message, conv *conv, lang faq.Lang, question string) error {
	if conv.Ticket != 0 {
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "already_open", map[string]any{"Ticket": conv.Ticket})})
	}
	id, err := rdb.NextID(ctx, e.rdb, seqKey)
	if err != nil {
		return fmt.Errorf("open ticket: %w", err)
	}
	// One open ticket per chat, even when two messages race.
	ok, err := e.rdb.SetNX(ctx, chatKey(rdb.ChatTicketPrefix, m.Channel, m.Chat), id, 0).Result()
	if err != nil {
		return fmt.Errorf("open ticket: %w", err)
	}
	if !ok {
		existing, _ := e.rdb.Get(ctx, chatKey(rdb.ChatTicketPrefix, m.Channel, m.Chat)).Int64()
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "already_open", map[string]any{"Ticket": existing})})
	}
	history, err := e.rdb.LRange(ctx, chatKey(rdb.HistoryPrefix, m.Channel, m.Chat), 0, -1).Result()
	if err != nil {
		return fmt.Errorf("open ticket: %w", err)
	}
	now := e.now()
	if question == "" {
		question = "(no question asked yet)"
	}
	pipe := rdb.TxPipeline(e.rdb)
	pipe.HSet(ctx, ticketKey(id), "id", id, "channel", m.Channel, "chat", m.Chat, "user", m.User, "name", m.Name,
		"lang", string(lang), "question", question, "state", StateNew, "created", unixMilli(now))
	for _, h := range history {
		pipe.RPush(ctx, ticketLogKey(id), h)
	}
	pipe.ZAdd(ctx, openKey, redis.Z{Score: float64(now.UnixMilli()), Member: id})
	pipe.ZAdd(ctx, allKey, redis.Z{Score: float64(now.UnixMilli()), Member: id})
	e.event(ctx, pipe, id, "opened", LogEntry{From: "event", Text: "ticket opened"}) // last: announced once listed (see rdb.TxPipeline)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("open ticket: %w", err)
	}
	e.metrics.Tickets.WithLabelValues("opened").Inc()
	e.log.Info("ticket opened", "ticket_id", id, "channel", m.Channel, "lang", lang)
	conv.Ticket = id
	text := e.text(lang, "escalated", map[string]any{"Ticket": id})
	if !e.cfg.Hours.Open(now) {
		text += "\n\n" + e.text(lang, "after_hours", map[string]any{"Hours": e.cfg.Hours.Spec, "Next": e.cfg.Hours.Next(now).Format("Mon 2 Jan 15:04 MST")})
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: text})
}

// toTicket passes a message to the open ticket's staff. The bot stays silent: staff answer now.
func (e *Engine) toTicket(ctx context.Context, m Message, conv *conv, text string) error {
	if text == "/human" {
		return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(conv.lang(m.LangHint, e.matcher().Config().Lang), "already_open", map[string]any{"Ticket": conv.Ticket})})
	}
	if text == "" {
		return nil // a button of an earlier answer: staff are on it now
	}
	pipe := rdb.TxPipeline(e.rdb)
	e.event(ctx, pipe, conv.Ticket, "message", LogEntry{From: "user", Name: m.Name, Text: text})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ticket %d: add message: %w", conv.Ticket, err)
	}
	return nil
}

// Ticket returns a ticket and its log.
func (e *Engine) Ticket(ctx context.Context, id int64) (*Ticket, []LogEntry, error) {
	pipe := e.rdb.Pipeline()
	h := pipe.HGetAll(ctx, ticketKey(id))
	l := pipe.LRange(ctx, ticketLogKey(id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("ticket %d: %w", id, err)
	}
	t := ticketFromHash(h.Val())
	if t == nil {
		return nil, nil, fmt.Errorf("ticket %d: %w", id, ErrNotFound)
	}
	var log []LogEntry
	for _, s := range l.Val() {
		var le LogEntry
		if json.Unmarshal([]byte(s), &le) == nil {
			log = append(log, le)
		}
	}
	return t, log, nil
}

// Tickets returns up to limit tickets, newest first: the open ones (new and claimed), or all.
func (e *Engine) Tickets(ctx context.Context, open bool, limit int) ([]*Ticket, error) {
	k := allKey
	if open {
		k = openKey
	}
	ids, err := e.rdb.ZRevRange(ctx, k, 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list tickets: %w", err)
	}
	return e.loadTickets(ctx, ids)
}

func (e *Engine) loadTickets(ctx context.Context, ids []string) ([]*Ticket, error) {
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, rdb.TicketPrefix+id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load tickets: %w", err)
	}
	var out []*Ticket
	for _, c := range cmds {
		if t := ticketFromHash(c.Val()); t != nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// Search returns up to limit tickets, newest first, whose question, asker or log contains every word of query
// (ignoring case).
func (e *Engine) Search(ctx context.Context, query string, limit int) ([]*Ticket, error) {
	words := strings.Fields(strings.ToLower(query))
	if len(words) == 0 {
		return nil, nil
	}
	const page, maxScan = 100, 5000
	var out []*Ticket
	for start := int64(0); start < maxScan && len(out) < limit; start += page {
		ids, err := e.rdb.ZRevRange(ctx, allKey, start, start+page-1).Result()
		if err != nil {
			return nil, fmt.Errorf("search tickets: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		pipe := e.rdb.Pipeline()
		hs := make([]*redis.MapStringStringCmd, len(ids))
		logs := make([]*redis.StringSliceCmd, len(ids))
		for i, id := range ids {
			hs[i] = pipe.HGetAll(ctx, rdb.TicketPrefix+id)
			logs[i] = pipe.LRange(ctx, rdb.TicketPrefix+id+":log", 0, -1)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("search tickets: %w", err)
		}
		for i := range ids {
			t := ticketFromHash(hs[i].Val())
			if t == nil {
				continue
			}
			hay := strings.ToLower(t.Question + " " + t.Name + " " + strings.Join(logs[i].Val(), " "))
			if containsAll(hay, words) {
				out = append(out, t)
				if len(out) == limit {
					break
				}
			}
		}
	}
	return out, nil
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// claimScript moves a ticket from new to claimed and records the assignee; a claimed ticket changes assignee.
// It returns 1 when the ticket was new, 0 when it was already claimed, -1 when it does not exist, -2 when it is
// resolved.
var claimScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'resolved' then return -2 end
redis.call('HSET', KEYS[1], 'assignee', ARGV[1])
if state == 'new' then
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'claimed', ARGV[2])
  return 1
end
return 0`)

func (e *Engine) claim(ctx context.Context, id int64, staff Staff) (bool, error) {
	n, err := claimScript.Run(ctx, e.rdb, []string{ticketKey(id)}, staff.Name, unixMilli(e.now())).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("claim ticket %d: %w", id, err)
	case n == -1:
		return false, fmt.Errorf("ticket %d: %w", id, ErrNotFound)
	case n == -2:
		return false, fmt.Errorf("ticket %d: %w", id, ErrClosed)
	}
	return n == 1, nil
}

// Claim makes staff the ticket's assignee.
func (e *Engine) Claim(ctx context.Context, id int64, staff Staff) error {
	first, err := e.claim(ctx, id, staff)
	if err != nil {
		return err
	}
	if first {
		e.metrics.Tickets.WithLabelValues("claimed").Inc()
	}
	pipe := rdb.TxPipeline(e.rdb)
	e.event(ctx, pipe, id, "claimed", LogEntry{From: "event", Name: staff.Name, Via: staff.Via, Text: "claimed by " + staff.Name})
	_, err = pipe.Exec(ctx)
	return err
}

// notePrefix marks a staff message that stays internal.
const notePrefix = "note:"

// StaffReply sends staff's answer to the person on their own channel, or, when it starts with "note:", records it
// as an internal note that the person never sees. Answering a new ticket claims it.
func (e *Engine) StaffReply(ctx context.Context, id int64, staff Staff, text string) error {
	text = strings.TrimSpace(text)
	if text == "" {
		return fmt.Errorf("reply: %w: empty message", ErrInvalid)
	}
	t, _, err := e.Ticket(ctx, id)
	if err != nil {
		return err
	}
	if len(text) >= len(notePrefix) && strings.EqualFold(text[:len(notePrefix)], notePrefix) {
		pipe := rdb.TxPipeline(e.rdb)
		e.event(ctx, pipe, id, "note", LogEntry{From: "note", Name: staff.Name, Via: staff.Via, Text: strings.TrimSpace(text[len(notePrefix):])})
		_, err := pipe.Exec(ctx)
		return err
	}
	if t.State == StateResolved {
		return fmt.Errorf("ticket %d: %w", id, ErrClosed)
	}
	if t.State == StateNew {
		if first, err := e.claim(ctx, id, staff); err != nil {
			return err
		} else if first {
			e.metrics.Tickets.WithLabelValues("claimed").Inc()
		}
	}
	now := e.now()
	pipe := rdb.TxPipeline(e.rdb)
	firstReply := pipe.HSetNX(ctx, ticketKey(id), "first_reply", unixMilli(now))
	e.event(ctx, pipe, id, "reply", LogEntry{From: "staff", Name: staff.Name, Via: staff.Via, Text: text})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ticket %d: reply: %w", id, err)
	}
	if firstReply.Val() {
		e.metrics.FirstReply.Observe(now.Sub(t.Created).Seconds())
	}
	msg := e.text(t.Lang, "staff_reply", map[string]any{"Staff": staff.Name, "Text": text})
	// The reply is recorded: an error now would have staff send it again, recorded twice (rdb.Finish).
	return rdb.Finish(ctx, func() error { return e.send(ctx, t.Channel, t.Chat, Reply{Text: msg, From: "staff"}) })
}

var resolveScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'resolved' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'resolved', 'resolved', ARGV[1])
return 1`)

// releaseScript ends a chat's link to its ticket, if it is still that ticket.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Resolve closes a ticket: the bot answers the person again, and asks them to rate the help.
func (e *Engine) Resolve(ctx context.Context, id int64, staff Staff) error {
	n, err := resolveScript.Run(ctx, e.rdb, []string{ticketKey(id)}, unixMilli(e.now())).Int()
	switch {
	case err != nil:
		return fmt.Errorf("resolve ticket %d: %w", id, err)
	case n == -1:
		return fmt.Errorf("ticket %d: %w", id, ErrNotFound)
	case n == 0:
		return nil // already resolved
	}
	t, _, err := e.Ticket(ctx, id)
	if err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, e.rdb, []string{chatKey(rdb.ChatTicketPrefix, t.Channel, t.Chat)}, id).Err(); err != nil {
		return fmt.Errorf("resolve ticket %d: %w", id, err)
	}
	pipe := rdb.TxPipeline(e.rdb)
	pipe.ZRem(ctx, openKey, id)
	e.event(ctx, pipe, id, "resolved", LogEntry{From: "event", Name: staff.Name, Via: staff.Via, Text: "resolved by " + staff.Name})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("resolve ticket %d: %w", id, err)
	}
	e.metrics.Tickets.WithLabelValues("resolved").Inc()
	e.log.Info("ticket resolved", "ticket_id", id)
	var row []Button
	for n := 1; n <= 5; n++ {
		row = append(row, Button{Label: strconv.Itoa(n), Data: fmt.Sprintf("rate:%d:%d", id, n)})
	}
	return e.send(ctx, t.Channel, t.Chat, Reply{Text: e.text(t.Lang, "resolved", nil), Buttons: [][]Button{row}})
}

// rate records the person's rating of a resolved ticket ("rate:<ticket>:<1-5>"), once.
func (e *Engine) rate(ctx context.Context, m Message, conv *conv, lang faq.Lang) error {
	parts := strings.Split(m.Data, ":")
	if len(parts) != 3 {
		return nil
	}
	id, err1 := strconv.ParseInt(parts[1], 10, 64)
	n, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || n < 1 || n > 5 {
		return nil
	}
	t, _, err := e.Ticket(ctx, id)
	if errors.Is(err, ErrNotFound) || (t != nil && (t.Channel != m.Channel || t.Chat != m.Chat || t.State != StateResolved)) {
		return nil // not this chat's ticket to rate
	}
	if err != nil {
		return err
	}
	set, err := e.rdb.HSetNX(ctx, ticketKey(id), "rating", n).Result()
	if err != nil {
		return fmt.Errorf("rate ticket %d: %w", id, err)
	}
	if set {
		e.metrics.Rating.Observe(float64(n))
		pipe := rdb.TxPipeline(e.rdb)
		e.event(ctx, pipe, id, "rated", LogEntry{From: "event", Text: fmt.Sprintf("rated %d/5", n)})
		if _, err := pipe.Exec(ctx); err != nil {
			// The rating is stored; only its line in the log and the staff faces' notice are missing.
			e.log.Warn("rate ticket: log the rating", "ticket_id", id, "err", err)
		}
	}
	return e.send(ctx, m.Channel, m.Chat, Reply{Text: e.text(lang, "rated", nil)})
}

// RemindUnclaimed raises a reminder, once, for each ticket still new after Config.RemindAfter, and returns how
// many it raised. Several processes may run it at once: each ticket is reminded by one of them.
func (e *Engine) RemindUnclaimed(ctx context.Context) (int, error) {
	now := e.now()
	due, err := e.rdb.ZRangeByScoreWithScores(ctx, openKey, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.Add(-e.cfg.RemindAfter).UnixMilli(), 10)}).Result()
	if err != nil {
		return 0, fmt.Errorf("reminders: %w", err)
	}
	n := 0
	for _, z := range due {
		id, _ := strconv.ParseInt(fmt.Sprint(z.Member), 10, 64)
		state, err := e.rdb.HGet(ctx, ticketKey(id), "state").Result()
		if err != nil || state != StateNew {
			continue
		}
		first, err := e.rdb.HSetNX(ctx, ticketKey(id), "reminded", unixMilli(now)).Result()
		if err != nil || !first {
			continue
		}
		pipe := rdb.TxPipeline(e.rdb)
		e.event(ctx, pipe, id, "reminder", LogEntry{From: "event", Text: fmt.Sprintf("still unclaimed after %s", e.cfg.RemindAfter)})
		if _, err := pipe.Exec(ctx); err != nil {
			// Not raised after all: the next run (of any process) tries again.
			e.rdb.HDel(context.WithoutCancel(ctx), ticketKey(id), "reminded")
			return n, fmt.Errorf("reminders: ticket %d: %w", id, err)
		}
		e.metrics.Tickets.WithLabelValues("reminded").Inc()
		e.log.Warn("ticket unclaimed", "ticket_id", id, "waiting", now.Sub(time.UnixMilli(int64(z.Score))).Round(time.Minute))
		n++
	}
	return n, nil
}
