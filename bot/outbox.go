package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
)

// Sender delivers a reply on a platform that can be slow, throttle or be down (Telegram, Slack). An Outbox
// queues replies for it in Redis and retries them, so that nothing is lost while the platform is unavailable or
// the process restarts.
type Sender interface {
	Deliver(ctx context.Context, chat string, r Reply) error
}

// RetryAfter is the error of a Sender whose platform asked it to wait (HTTP 429 with retry_after).
type RetryAfter struct{ Wait time.Duration }

func (e *RetryAfter) Error() string { return fmt.Sprintf("rate limited: retry after %s", e.Wait) }

// Permanent wraps an error that retrying cannot fix: the chat is gone, or the bot was blocked.
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// Outbox is a channel whose replies wait in a Redis stream until its Sender delivers them. Replies to one chat
// are delivered in order by one worker of the process that read them; a process that dies leaves its replies
// pending, and another process claims them after a minute. Delivery is at least once: a process that dies
// between the platform's acceptance and the acknowledgement sends that reply again.
type Outbox struct {
	name   string
	rdb    redis.UniversalClient
	sender Sender
	log    *slog.Logger
	// Shards is how many chats are delivered to at once; MaxAge is how long a reply is retried before it is
	// dropped (and logged); Claim is how long a reply may stay pending with a dead process; Backoff is the first
	// wait after a failure, doubled up to a minute.
	Shards  int
	MaxAge  time.Duration
	Claim   time.Duration
	Backoff time.Duration
}

// NewOutbox returns the outbox of channel name.
func NewOutbox(name string, rdb redis.UniversalClient, sender Sender, log *slog.Logger) *Outbox {
	return &Outbox{name: name, rdb: rdb, sender: sender, log: log, Shards: 16, MaxAge: 24 * time.Hour, Claim: time.Minute, Backoff: time.Second}
}

const outboxGroup = "delivery"

func (o *Outbox) key() string { return rdb.OutboxPrefix + o.name }

// Send queues a reply; it implements Channel.
func (o *Outbox) Send(ctx context.Context, chat string, r Reply) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return o.rdb.XAdd(ctx, &redis.XAddArgs{Stream: o.key(), Values: map[string]any{"chat": chat, "reply": data, "at": time.Now().UnixMilli()}}).Err()
}

// Pending returns how many replies wait for delivery (queued or in flight).
func (o *Outbox) Pending(ctx context.Context) (int64, error) {
	return o.rdb.XLen(ctx, o.key()).Result()
}

type outMsg struct {
	id    string
	chat  string
	reply Reply
	at    time.Time
}

// Run delivers queued replies until ctx is done.
func (o *Outbox) Run(ctx context.Context) error {
	if err := rdb.EnsureGroup(ctx, o.rdb, o.key(), outboxGroup, "0"); err != nil {
		return fmt.Errorf("outbox %s: %w", o.name, err)
	}
	consumer := rdb.Consumer()
	shards := make([]chan outMsg, o.Shards)
	done := make(chan struct{})
	for i := range shards {
		shards[i] = make(chan outMsg, 64)
		go func() {
			for m := range shards[i] {
				o.deliver(ctx, m)
			}
			done <- struct{}{}
		}()
	}
	defer func() {
		for _, s := range shards {
			close(s)
		}
		for range shards {
			<-done
		}
	}()
	dispatch := func(msgs []redis.XMessage) {
		for _, xm := range msgs {
			m, ok := o.decode(xm)
			if !ok {
				o.ack(context.WithoutCancel(ctx), xm.ID)
				continue
			}
			h := fnv.New32a()
			h.Write([]byte(m.chat))
			select {
			case shards[h.Sum32()%uint32(len(shards))] <- m:
			case <-ctx.Done():
				return
			}
		}
	}
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastClaim) > o.Claim/2 {
			lastClaim = time.Now()
			claimed, _, err := o.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: o.key(), Group: outboxGroup, Consumer: consumer, MinIdle: o.Claim, Start: "0", Count: 100}).Result()
			if err == nil && len(claimed) > 0 {
				o.log.Info("outbox: took over replies of a stopped process", "channel", o.name, "count", len(claimed))
				dispatch(claimed)
			}
		}
		res, err := o.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: outboxGroup, Consumer: consumer, Streams: []string{o.key(), ">"}, Count: 100, Block: 2 * time.Second}).Result()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			o.log.Warn("outbox: read", "channel", o.name, "err", err)
			Sleep(ctx, time.Second)
			continue
		}
		for _, st := range res {
			dispatch(st.Messages)
		}
	}
	return nil
}

func (o *Outbox) decode(xm redis.XMessage) (outMsg, bool) {
	m := outMsg{id: xm.ID}
	m.chat, _ = xm.Values["chat"].(string)
	data, _ := xm.Values["reply"].(string)
	at, _ := strconv.ParseInt(fmt.Sprint(xm.Values["at"]), 10, 64)
	m.at = time.UnixMilli(at)
	if err := json.Unmarshal([]byte(data), &m.reply); err != nil || m.chat == "" {
		o.log.Error("outbox: dropping an unreadable reply", "channel", o.name, "id", xm.ID)
		return m, false
	}
	return m, true
}

// deliver sends one reply, retrying until it is delivered, refused for good, or too old.
func (o *Outbox) deliver(ctx context.Context, m outMsg) {
	backoff := o.Backoff
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := o.sender.Deliver(ctx, m.chat, m.reply)
		var ra *RetryAfter
		var perm *Permanent
		switch {
		case err == nil:
			// Recorded even when ctx ended during the send (a shutdown): a delivered reply left pending would be
			// sent again by the process that claims it.
			o.ack(context.WithoutCancel(ctx), m.id)
			return
		case errors.As(err, &perm):
			o.log.Warn("outbox: reply refused for good, dropped", "channel", o.name, "chat_id", m.chat, "err", err)
			o.ack(ctx, m.id)
			return
		case time.Since(m.at) > o.MaxAge:
			o.log.Error("outbox: reply undelivered for too long, dropped", "channel", o.name, "chat_id", m.chat, "attempts", attempt, "err", err)
			o.ack(ctx, m.id)
			return
		case errors.As(err, &ra):
			Sleep(ctx, ra.Wait)
		default:
			if attempt == 1 || attempt%10 == 0 {
				o.log.Warn("outbox: delivery failed, retrying", "channel", o.name, "chat_id", m.chat, "attempt", attempt, "err", err)
			}
			Sleep(ctx, backoff)
			backoff = min(2*backoff, time.Minute)
		}
	}
}

func (o *Outbox) ack(ctx context.Context, id string) {
	pipe := o.rdb.TxPipeline()
	pipe.XAck(ctx, o.key(), outboxGroup, id)
	pipe.XDel(ctx, o.key(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		o.log.Warn("outbox: acknowledge", "channel", o.name, "err", err)
	}
}

// Sleep waits for d, or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Pending returns how many replies wait for delivery on each channel that has an outbox.
func (e *Engine) Pending(ctx context.Context) (map[string]int64, error) {
	e.mu.Lock()
	outboxes := map[string]*Outbox{}
	for name, ch := range e.channels {
		if o, ok := ch.(*Outbox); ok {
			outboxes[name] = o
		}
	}
	e.mu.Unlock()
	out := map[string]int64{}
	for name, o := range outboxes {
		n, err := o.Pending(ctx)
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, nil
}
