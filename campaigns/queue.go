package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/wneessen/go-mail"

	"csrdesk/internal/rdb"
	"csrdesk/templates"
)

// The send queue. Each running campaign has a Redis stream of jobs, one per recipient, read by the consumer
// group "workers". A scheduler (whichever worker holds the campaign's lock) pages through the lists' members and
// adds jobs; it records how far it got in the same script that adds them, so a crash neither skips nor doubles a
// recipient. A worker takes a token from the rate limiter all workers share, then takes the recipient for sending
// (takeScript: in one step, the job is still its own, the recipient has no final outcome and no other job of theirs
// is being sent), sends, then records the outcome and acknowledges the job. A 4xx goes to a delayed set and comes
// back later; a 5xx is final. Jobs held by a worker that died are claimed by another after ClaimIdle; a worker
// that is alive renews its claim on every job it holds a few times per ClaimIdle (keepScript), however long it
// waits for the mail server or for Redis, so nobody takes them over from it.
//
// Outcomes are committed in groups: one recorder per worker gathers what its connections report while its
// previous commit is on the wire and writes them in one script per campaign. A connection sends its next message
// while its last outcome is being committed, but no further, so the only duplicates possible are the messages
// the server accepted, not yet recorded, when their worker died: at most two per connection.

// WorkerConfig tunes a worker.
type WorkerConfig struct {
	Rate        int              // messages per second over all workers; 0 for no limit
	Conns       int              // messages sent at once (SMTP connections) by this worker
	MaxAttempts int              // tries for a recipient refused with 4xx before it counts as failed
	RetryBase   time.Duration    // wait before the first retry, doubled for each next one
	ClaimIdle   time.Duration    // a job a worker has held this long without acknowledging is taken over
	Ahead       int              // jobs the scheduler keeps queued ahead of the workers, per campaign
	PauseAfter  int              // consecutive failures after which a campaign pauses itself
	HardBounces int              // permanent failures after which a subscriber is marked bounced
	PublicURL   string           // where unsubscribe links point
	Secret      []byte           // signs unsubscribe links
	Poll        time.Duration    // how often an idle worker looks for work
	Drain       time.Duration    // how long a worker shutting down keeps trying to record what it sent
	Bounces     string           // the return path's base, e.g. bounces@platform.example; empty for bounces@ the From's domain
	DKIM        *mail.DKIMSigner // signs every message, List-Unsubscribe headers included; nil for no DKIM
}

// DefaultWorkerConfig returns the defaults.
func DefaultWorkerConfig() WorkerConfig {
	return WorkerConfig{Rate: 0, Conns: 8, MaxAttempts: 6, RetryBase: time.Minute, ClaimIdle: 2 * time.Minute, Ahead: 5000,
		PauseAfter: 50, HardBounces: 3, Poll: 500 * time.Millisecond, Drain: 10 * time.Second}
}

// Worker delivers running campaigns.
type Worker struct {
	store     *Store
	rdb       redis.UniversalClient
	transport Transport
	layout    *templates.Mail
	limiter   *redis_rate.Limiter
	cfg       WorkerConfig
	log       *slog.Logger
	consumer  string

	mu        sync.Mutex
	mailings  map[int64]*Mailing
	segments  map[int64]*vm.Program
	groups    map[int64]bool
	fails     map[int64]int // consecutive failures, for the automatic pause
	lastClaim map[int64]time.Time
	held      map[int64]map[string]bool // the jobs read and not yet recorded or given back, by campaign
	gone      map[int64]bool            // campaigns found missing from Redis, said once

	redisTrouble time.Time // when a Redis call last failed
}

// NewWorker returns a worker that sends through t.
func NewWorker(store *Store, t Transport, layout *templates.Mail, cfg WorkerConfig, log *slog.Logger) *Worker {
	return &Worker{store: store, rdb: store.rdb, transport: t, layout: layout, limiter: redis_rate.NewLimiter(store.rdb), cfg: cfg, log: log,
		consumer: rdb.Consumer(),
		mailings: map[int64]*Mailing{}, segments: map[int64]*vm.Program{}, groups: map[int64]bool{}, fails: map[int64]int{}, lastClaim: map[int64]time.Time{},
		held: map[int64]map[string]bool{}, gone: map[int64]bool{}}
}

type job struct {
	c     *Campaign
	id    string // stream entry
	email string
	// Read for the whole batch in one round trip: the recipient's delivery record and subscriber hash.
	prev string
	sub  map[string]string
	err  error
}

// Run works until ctx is done, then finishes the jobs it has taken: a message being sent is sent and recorded,
// the jobs not started yet go back to the queue.
func (w *Worker) Run(ctx context.Context) error {
	conns := make([]Conn, 0, w.cfg.Conns)
	for range w.cfg.Conns {
		conn, err := w.transport.Open()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return fmt.Errorf("worker: %w", err)
		}
		conns = append(conns, conn)
	}
	jobs := make(chan job, w.cfg.Conns)
	outcomes := make(chan result, w.cfg.Conns)
	recorded := make(chan struct{})
	go func() { w.recorder(ctx, outcomes); close(recorded) }()
	keepDone := make(chan struct{})
	keepCtx, stopKeep := context.WithCancel(context.WithoutCancel(ctx))
	go func() { w.keepClaims(keepCtx); close(keepDone) }()
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			var last chan struct{} // the previous outcome's commit
			down := 0              // connection (or Redis) failures in a row
			for j := range jobs {
				if ctx.Err() != nil {
					// Shutting down: what is not started yet goes back to the queue at once.
					w.release(context.WithoutCancel(ctx), j.c.ID, []job{j})
					continue
				}
				r := w.process(ctx, conn, j)
				if r.kind == "" {
					w.unhold(j)
					if r.o.down {
						w.noteRedisTrouble()
						down = w.pause(ctx, down, "worker: Redis refuses the step before a send; waiting", r.o.reason)
					}
					continue // nothing to record: the job stays pending and is claimed again
				}
				if last != nil {
					<-last
				}
				r.done = make(chan struct{})
				outcomes <- r
				last = r.done
				if r.kind != "requeue" {
					down = 0
					continue
				}
				down = w.pause(ctx, down, "worker: the mail server is unreachable or refuses the sender; waiting", r.o.reason)
			}
			if last != nil {
				<-last
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
		close(outcomes)
		<-recorded
		stopKeep()
		<-keepDone
	}()
	for ctx.Err() == nil {
		busy, err := w.round(ctx, jobs)
		if err != nil && ctx.Err() == nil {
			w.noteRedisTrouble()
			w.log.Warn("worker", "err", err)
		}
		if !busy {
			select {
			case <-ctx.Done():
			case <-time.After(w.cfg.Poll):
			}
		}
	}
	return nil
}

// pause waits before a connection tries again after its down-th failure in a row, longer each time up to 30 s,
// or until ctx is done; it returns the new count.
func (w *Worker) pause(ctx context.Context, down int, msg, reason string) int {
	wait := min(time.Second<<min(down, 5), 30*time.Second)
	w.log.Warn(msg, "wait", wait, "err", reason)
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
	return down + 1
}

// pendingLua defines pending(stream, group, entry[, consumer]): whether the entry is pending in the group (with
// that consumer, if given): read and not yet acknowledged.
const pendingLua = `
local function pending(stream, group, entry, consumer)
  if consumer then return #redis.call('XPENDING', stream, group, entry, entry, 1, consumer) == 1 end
  return #redis.call('XPENDING', stream, group, entry, entry, 1) == 1
end
`

// keepScript renews this worker's claim on the jobs it holds (ARGV: the group, the consumer, then the entries):
// XCLAIM with an idle time of 0 resets a job's idle time, so another worker's XAUTOCLAIM leaves it alone. A job
// another worker has claimed meanwhile is left to it.
var keepScript = redis.NewScript(pendingLua + `
local kept = 0
for i = 3, #ARGV do
  if pending(KEYS[1], ARGV[1], ARGV[i], ARGV[2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept`)

// keepClaims renews the claim on every job this worker holds, four times per ClaimIdle, until ctx is done.
func (w *Worker) keepClaims(ctx context.Context) {
	t := time.NewTicker(max(w.cfg.ClaimIdle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		held := map[int64][]any{}
		for id, jobs := range w.held {
			for entry := range jobs {
				held[id] = append(held[id], entry)
			}
		}
		w.mu.Unlock()
		for id, entries := range held {
			for len(entries) > 0 {
				n := min(len(entries), 500)
				args := append([]any{workerGroup, w.consumer}, entries[:n]...)
				entries = entries[n:]
				if err := keepScript.Run(ctx, w.rdb, []string{campaignKeys(id).jobs}, args...).Err(); err != nil && ctx.Err() == nil {
					w.noteRedisTrouble()
					w.log.Warn("worker: renew the claim on held jobs", "campaign_id", id, "err", err)
				}
			}
		}
	}
}

// hold adds jobs read to those the worker holds, and returns those it did not hold already: after Redis was away,
// XAUTOCLAIM can hand a worker back jobs it has in hand, and one job must not go through it twice.
func (w *Worker) hold(c int64, msgs []redis.XMessage) []redis.XMessage {
	if len(msgs) == 0 {
		return msgs
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held[c] == nil {
		w.held[c] = map[string]bool{}
	}
	fresh := msgs[:0]
	for _, m := range msgs {
		if !w.held[c][m.ID] {
			w.held[c][m.ID] = true
			fresh = append(fresh, m)
		}
	}
	return fresh
}

func (w *Worker) unhold(jobs ...job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range jobs {
		delete(w.held[j.c.ID], j.id)
		if len(w.held[j.c.ID]) == 0 {
			delete(w.held, j.c.ID)
		}
	}
}

// forget drops what the worker keeps about campaigns that are no longer active.
func (w *Worker) forget(active map[int64]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.DeleteFunc(w.groups, func(id int64, _ bool) bool { return !active[id] })
	maps.DeleteFunc(w.gone, func(id int64, _ bool) bool { return !active[id] })
	maps.DeleteFunc(w.mailings, func(id int64, _ *Mailing) bool { return !active[id] })
	maps.DeleteFunc(w.segments, func(id int64, _ *vm.Program) bool { return !active[id] })
	maps.DeleteFunc(w.fails, func(id int64, _ int) bool { return !active[id] })
	maps.DeleteFunc(w.lastClaim, func(id int64, _ time.Time) bool { return !active[id] })
}

// round visits every active campaign once; it reports whether it found work.
func (w *Worker) round(ctx context.Context, jobs chan<- job) (bool, error) {
	ids, err := w.rdb.SMembers(ctx, activeKey).Result()
	if err != nil {
		return false, err
	}
	busy := false
	active := map[int64]bool{}
	for _, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		active[id] = true
	}
	w.forget(active) // all of the set, before a campaign's error can end the round
	for _, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		c, err := w.store.Campaign(ctx, id)
		if errors.Is(err, ErrNotFound) {
			if err := w.rdb.SRem(ctx, activeKey, id).Err(); err != nil {
				return busy, err
			}
			continue
		}
		if err != nil {
			return busy, err
		}
		if c.State == Scheduled && !c.SendAt.After(time.Now()) {
			res, err := transitionScript.Run(ctx, w.rdb, []string{campaignKeys(id).meta}, Running, "", Scheduled).Slice()
			if err != nil {
				return busy, fmt.Errorf("campaign %d: start at its time: %w", id, err)
			}
			if res[0].(int64) == 1 {
				c.State = Running
			} else if c, err = w.store.Campaign(ctx, id); err != nil { // paused or cancelled meanwhile
				return busy, err
			}
		}
		if c.State == Cancelled || c.State == Finished {
			if err := w.rdb.SRem(ctx, activeKey, id).Err(); err != nil {
				return busy, err
			}
			continue
		}
		if c.State != Running {
			continue
		}
		n, err := w.work(ctx, c, jobs)
		if err != nil {
			return busy, fmt.Errorf("campaign %d: %w", id, err)
		}
		busy = busy || n > 0
	}
	return busy, nil
}

func (w *Worker) work(ctx context.Context, c *Campaign, jobs chan<- job) (int, error) {
	k := campaignKeys(c.ID)
	if !w.hasGroup(c.ID) {
		if err := rdb.EnsureGroup(ctx, w.rdb, k.jobs, workerGroup, "0"); err != nil {
			return 0, err
		}
		w.setGroup(c.ID)
	}
	if err := w.schedule(ctx, c); err != nil {
		return 0, err
	}
	if err := moveDueScript.Run(ctx, w.rdb, []string{k.retry, k.jobs}, time.Now().UnixMilli()).Err(); err != nil {
		return 0, err
	}
	if err := trimScript.Run(ctx, w.rdb, []string{k.jobs}, workerGroup).Err(); err != nil {
		return 0, err
	}
	var msgs []redis.XMessage
	if w.claimDue(c.ID) {
		var err error
		msgs, _, err = w.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: k.jobs, Group: workerGroup, Consumer: w.consumer,
			MinIdle: w.cfg.ClaimIdle, Start: "0", Count: int64(w.batch())}).Result()
		if err != nil {
			return 0, err
		}
	}
	if len(msgs) == 0 {
		res, err := w.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workerGroup, Consumer: w.consumer,
			Streams: []string{k.jobs, ">"}, Count: int64(w.batch()), Block: -1}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		for _, st := range res {
			msgs = append(msgs, st.Messages...)
		}
	}
	msgs = w.hold(c.ID, msgs)
	if len(msgs) > 0 && c.Event != "" {
		w.followEvent(ctx, c)
	}
	batch := w.prefetch(ctx, c, msgs)
	checked := time.Now()
	for i, j := range batch {
		stop := ctx.Err() != nil
		if !stop && time.Since(checked) > stateCheck {
			state, err := w.rdb.HGet(ctx, k.meta, "state").Result()
			stop, checked = err == nil && state != Running, time.Now()
		}
		if !stop {
			select {
			case jobs <- j:
				continue
			case <-ctx.Done():
			}
		}
		// Paused, cancelled or shutting down: the jobs not started go back to the queue at once, rather than
		// waiting, pending, for another worker to claim them.
		w.release(context.WithoutCancel(ctx), c.ID, batch[i:])
		return len(msgs), nil
	}
	if len(msgs) == 0 {
		done, err := finishScript.Run(ctx, w.rdb, []string{k.meta, k.cursor, k.jobs, k.retry}, time.Now().UTC().Format(time.RFC3339Nano), workerGroup).Int()
		if err != nil {
			return 0, err
		}
		if done == 1 {
			w.log.Info("campaign finished", "campaign_id", c.ID)
			if err := w.rdb.SRem(ctx, activeKey, c.ID).Err(); err != nil {
				return 0, err // the next round removes it
			}
		}
	}
	return len(msgs), nil
}

// prefetch reads the delivery records and subscribers of a batch of jobs in one round trip.
func (w *Worker) prefetch(ctx context.Context, c *Campaign, msgs []redis.XMessage) []job {
	if len(msgs) == 0 {
		return nil
	}
	pipe := w.rdb.Pipeline()
	out := make([]job, len(msgs))
	emails := make([]string, len(msgs))
	subs := make([]*redis.MapStringStringCmd, len(msgs))
	for i, m := range msgs {
		email, _ := m.Values["e"].(string)
		out[i] = job{c: c, id: m.ID, email: email}
		emails[i] = email
		subs[i] = pipe.HGetAll(ctx, subKey(email))
	}
	prevs := pipe.HMGet(ctx, campaignKeys(c.ID).delivery, emails...)
	if _, err := pipe.Exec(ctx); err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	for i := range out {
		out[i].prev, _ = prevs.Val()[i].(string)
		out[i].sub = subs[i].Val()
	}
	return out
}

// stateCheck is how often a worker handing out a batch looks whether its campaign is still running.
const stateCheck = 100 * time.Millisecond

// releaseScript puts jobs a worker has read but not started back at the end of the queue: only those still its
// own (ARGV: the group, the consumer, then entry and address pairs). One another worker has claimed meanwhile may
// be being sent by it; given back, its copy would not see that job's mark and be sent too.
var releaseScript = redis.NewScript(pendingLua + `
for i = 3, #ARGV, 2 do
  if pending(KEYS[1], ARGV[1], ARGV[i], ARGV[2]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i+1])
  end
end
return 0`)

func (w *Worker) release(ctx context.Context, id int64, jobs []job) {
	args := []any{workerGroup, w.consumer}
	for _, j := range jobs {
		args = append(args, j.id, j.email)
	}
	if err := releaseScript.Run(ctx, w.rdb, []string{campaignKeys(id).jobs}, args...).Err(); err != nil {
		w.log.Warn("worker: give back jobs", "campaign_id", id, "jobs", len(jobs), "err", err) // claimed later
	}
	w.unhold(jobs...)
}

// readBatch is how many jobs a worker reads at once.
const readBatch = 200

// batch is how many jobs to read at once: readBatch, but at a low rate only as many as the worker sends in a
// quarter of ClaimIdle: the jobs a worker holds when it dies wait ClaimIdle for another, and fewer of them are
// late that way.
func (w *Worker) batch() int {
	if w.cfg.Rate <= 0 {
		return readBatch
	}
	return min(readBatch, max(w.cfg.Conns, w.cfg.Rate*int(w.cfg.ClaimIdle.Seconds())/4))
}

// claimDue reports whether it is time to look for jobs of dead workers in a campaign: a few times per ClaimIdle.
func (w *Worker) claimDue(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.lastClaim[id]) < w.cfg.ClaimIdle/4 || time.Since(w.redisTrouble) < w.cfg.ClaimIdle {
		// Nor for ClaimIdle after this worker last found Redis failing: while Redis was away no worker could
		// renew its claims, so every job looks idle when it is back, the live workers' too. They renew theirs
		// within a quarter of ClaimIdle; the jobs of one that died are taken after.
		return false
	}
	w.lastClaim[id] = time.Now()
	return true
}

// noteRedisTrouble records that a Redis call failed, for claimDue.
func (w *Worker) noteRedisTrouble() {
	w.mu.Lock()
	w.redisTrouble = time.Now()
	w.mu.Unlock()
}

func (w *Worker) hasGroup(id int64) bool { w.mu.Lock(); defer w.mu.Unlock(); return w.groups[id] }
func (w *Worker) setGroup(id int64)      { w.mu.Lock(); defer w.mu.Unlock(); w.groups[id] = true }

// enqueueScript adds a page of recipients (those not queued before) and moves the list's cursor, atomically.
var enqueueScript = redis.NewScript(`
local added = 0
for i = 3, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'e', ARGV[i])
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[4], 'total', added)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return added`)

// moveDueScript puts recipients whose retry is due back in the queue.
var moveDueScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, e in ipairs(due) do
  redis.call('ZREM', KEYS[1], e)
  redis.call('XADD', KEYS[2], '*', 'e', e)
end
return #due`)

// lastDeliveredLua defines lastDelivered(stream, group): the id of the last entry the group has handed out, or nil
// when the stream or the group does not exist. Entries up to it are either pending or acknowledged (recorded);
// entries after it wait to be read.
const lastDeliveredLua = `
local function lastDelivered(stream, group)
  if redis.call('EXISTS', stream) == 0 then return nil end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then last = g[i+1] end
    end
    if name == group then return last end
  end
  return nil
end
`

// trimScript deletes the jobs before the oldest one not yet acknowledged, node by node: all of them are recorded.
var trimScript = redis.NewScript(lastDeliveredLua + `
local oldest = redis.call('XPENDING', KEYS[1], ARGV[1])[2] or lastDelivered(KEYS[1], ARGV[1])
if oldest then redis.call('XTRIM', KEYS[1], 'MINID', '~', oldest) end
return 0`)

// finishScript marks a running campaign finished when every recipient is queued and none is waiting: no retry
// due, no job pending with a worker, none left to read. The jobs, all recorded, are deleted.
var finishScript = redis.NewScript(lastDeliveredLua + `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[2], '.done') ~= '1' then return 0 end
if redis.call('ZCARD', KEYS[4]) > 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('XPENDING', KEYS[3], ARGV[2])[1] > 0 then return 0 end
  local last = lastDelivered(KEYS[3], ARGV[2]) or '0-0'
  if #redis.call('XRANGE', KEYS[3], '(' .. last, '+', 'COUNT', 1) > 0 then return 0 end
  redis.call('XTRIM', KEYS[3], 'MAXLEN', 0)
end
redis.call('HSET', KEYS[1], 'state', 'finished', 'finished', ARGV[1])
return 1`)

const schedulePage = 1000

// pageScript returns the next page of a list's members, with their scores, after a cursor: "" for the start, or
// the score and address of the last member queued. Members join and leave while a campaign is queued, so a
// position in the list would skip someone each time a member before it leaves; the cursor is the member
// instead. When that member itself has left (or left and joined again later), the page starts at the first
// member who joined at the same time as it did: the queued set skips those already queued. A bare number is a
// position, from a cursor written before this.
var pageScript = redis.NewScript(`
local cur, n, start = ARGV[1], tonumber(ARGV[2]), 0
local sp = string.find(cur, ' ', 1, true)
if sp then
  local score, member = string.sub(cur, 1, sp - 1), string.sub(cur, sp + 1)
  local now = redis.call('ZSCORE', KEYS[1], member)
  if now and tonumber(now) == tonumber(score) then
    start = redis.call('ZRANK', KEYS[1], member) + 1
  else
    start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. score)
  end
elseif cur ~= '' then
  start = tonumber(cur)
end
return redis.call('ZRANGE', KEYS[1], start, start + n - 1, 'WITHSCORES')`)

// schedule adds recipients while fewer than Ahead jobs wait, if this worker holds the campaign's scheduling lock.
// It returns once it has added enough for the next read, so that the first mails go out while the rest is being
// queued: work calls it before every read.
func (w *Worker) schedule(ctx context.Context, c *Campaign) error {
	k := campaignKeys(c.ID)
	if done, _ := w.rdb.HGet(ctx, k.cursor, ".done").Result(); done == "1" {
		return nil
	}
	ok, err := w.rdb.SetNX(ctx, k.lock, w.consumer, 30*time.Second).Result()
	if err != nil || !ok {
		return err
	}
	defer func() {
		// Only our own lock: one that expired while we worked may be another worker's by now.
		if err := unlockScript.Run(context.WithoutCancel(ctx), w.rdb, []string{k.lock}, w.consumer).Err(); err != nil {
			w.log.Warn("worker: release the scheduling lock; it expires by itself", "campaign_id", c.ID, "err", err)
		}
	}()
	for added := 0; added < readBatch; {
		// The recipients queued and not yet done: the stream also holds recorded jobs until trimScript's next pass.
		st, err := w.store.CampaignStatus(ctx, c.ID)
		if err != nil || st.Pending >= int64(w.cfg.Ahead) {
			return err
		}
		cursor, err := w.rdb.HGetAll(ctx, k.cursor).Result()
		if err != nil {
			return err
		}
		progressed := false
		for _, list := range c.Lists {
			if cursor[list] == "end" {
				continue
			}
			page, err := pageScript.Run(ctx, w.rdb, []string{membersKey(list)}, cursor[list], schedulePage).StringSlice()
			if err != nil {
				return err
			}
			emails := make([]string, 0, len(page)/2)
			for i := 0; i < len(page); i += 2 {
				emails = append(emails, page[i])
			}
			next := "end"
			if len(emails) == schedulePage {
				next = page[len(page)-1] + " " + page[len(page)-2] // score, then member
			}
			active, err := w.recipients(ctx, c, emails)
			if err != nil {
				return err
			}
			args := []any{list, next}
			for _, e := range active {
				args = append(args, e)
			}
			n, err := enqueueScript.Run(ctx, w.rdb, []string{k.queued, k.jobs, k.cursor, k.counts}, args...).Int()
			if err != nil {
				return err
			}
			added += n
			progressed = true
			break // one page at a time, then look at the queue length again
		}
		if !progressed {
			return w.rdb.HSet(ctx, k.cursor, ".done", "1").Err()
		}
	}
	return nil
}

// unlockScript deletes a lock if it is still the caller's.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// recipients keeps the addresses of active subscribers that the campaign's segment selects.
func (w *Worker) recipients(ctx context.Context, c *Campaign, emails []string) ([]string, error) {
	if len(emails) == 0 {
		return nil, nil
	}
	segment, err := w.segment(c)
	if err != nil {
		return nil, err
	}
	pipe := w.rdb.Pipeline()
	if segment == nil {
		// Everybody active: the status is all there is to read.
		cmds := make([]*redis.StringCmd, len(emails))
		for i, e := range emails {
			cmds[i] = pipe.HGet(ctx, subKey(e), "status")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		var out []string
		for i, cmd := range cmds {
			if cmd.Val() == Active {
				out = append(out, emails[i])
			}
		}
		return out, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(emails))
	for i, e := range emails {
		cmds[i] = pipe.HGetAll(ctx, subKey(e))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []string
	for i, cmd := range cmds {
		v := cmd.Val()
		if v["status"] != Active {
			continue
		}
		ok, err := matches(segment, fromHash(v))
		if err != nil {
			w.log.Warn("segment", "campaign_id", c.ID, "err", err)
			continue
		}
		if ok {
			out = append(out, emails[i])
		}
	}
	return out, nil
}

// recordScript records a group of outcomes of one campaign and acknowledges their jobs, atomically; trimScript
// deletes them later, in bulk (XDEL looks each one up in its stream node, which costs Redis more than recording
// them did). ARGV:
// the group, the most attempts, now and the first retry's wait (ms), then per outcome: address, kind (sent, fail,
// temp, requeue, drop or ack), stream entry, failure JSON. An outcome for a recipient that already has a final one
// (a duplicate job) is only acknowledged, as is an ack (another job of the recipient is being sent); a temp
// outcome below the most attempts goes to the retry set with a doubling wait; a requeue (the mail server
// unreachable, or refusing the sender) goes back at the end of the queue as it is. The recipient's mark of being
// sent (takeScript's) goes with its job's outcome. A campaign that is gone from Redis (it lost its data) gets
// nothing written: -1. The #!lua line makes Redis refuse the whole script up front when it is at maxmemory, rather
// than stop it at its first write with the deletions before it done.
var recordScript = redis.NewScript(`#!lua
if redis.call('EXISTS', KEYS[8]) == 0 then return -1 end
local maxAttempts, now, base = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local emails = {}
for i = 5, #ARGV, 4 do emails[#emails+1] = ARGV[i] end
local prevs = redis.call('HMGET', KEYS[1], unpack(emails))
local state = {} -- what is recorded for an address so far, should it come twice in a group
for n, email in ipairs(emails) do
  if state[email] == nil then state[email] = prevs[n] end
end
local sent, sentCount, retryDone = {}, 0, 0
for n, email in ipairs(emails) do
  local i = 5 + (n - 1) * 4
  local prev, kind = state[email], ARGV[i+1]
  if kind ~= 'ack' and redis.call('HGET', KEYS[7], email) == ARGV[i+2] then redis.call('HDEL', KEYS[7], email) end
  -- A job acknowledged already was settled by someone else: an erasure (which counted it), or another recording
  -- of the same job. Nothing more is written for it.
  local mine = true
  if kind ~= 'drop' then
    mine = redis.call('XACK', KEYS[3], ARGV[1], ARGV[i+2]) == 1
  elseif prev == 'sent' or prev == 'failed' then
    redis.call('XACK', KEYS[3], ARGV[1], ARGV[i+2]) -- the drop branch below, which acknowledges, is not taken
  end
  if mine and prev ~= 'sent' and prev ~= 'failed' and kind ~= 'ack' then
    if kind == 'temp' then
      local tries = redis.call('HINCRBY', KEYS[4], email, 1)
      if tries < maxAttempts then
        redis.call('HSET', KEYS[1], email, 'retry')
        redis.call('ZADD', KEYS[5], now + base * 2 ^ math.min(tries - 1, 10), email)
        if prev ~= 'retry' then redis.call('HINCRBY', KEYS[2], 'retrying', 1) end
      else
        kind = 'fail'
      end
    end
    if kind ~= 'temp' and kind ~= 'drop' and kind ~= 'requeue' and prev == 'retry' then retryDone = retryDone + 1 end
    if kind == 'temp' then
      state[email] = 'retry'
    elseif kind == 'requeue' then
      redis.call('XADD', KEYS[3], '*', 'e', email)
    elseif kind == 'drop' then
      -- The subscriber was erased: counted as failed, nothing kept about them; unless the erasure got to the
      -- job first and counted it itself.
      if redis.call('XACK', KEYS[3], ARGV[1], ARGV[i+2]) == 1 then
        redis.call('HINCRBY', KEYS[2], 'failed', 1)
        if prev == 'retry' then retryDone = retryDone + 1 end
        redis.call('HDEL', KEYS[1], email)
      end
    elseif kind == 'sent' then
      sent[#sent+1] = email
      sent[#sent+1] = 'sent'
      sentCount = sentCount + 1
      state[email] = 'sent'
    else
      redis.call('HSET', KEYS[1], email, 'failed')
      redis.call('HINCRBY', KEYS[2], 'failed', 1)
      redis.call('HSET', KEYS[6], email, ARGV[i+3])
      state[email] = 'failed'
    end
  end
end
if sentCount > 0 then
  redis.call('HSET', KEYS[1], unpack(sent))
  redis.call('HINCRBY', KEYS[2], 'sent', sentCount)
end
if retryDone > 0 then redis.call('HINCRBY', KEYS[2], 'retrying', -retryDone) end
return #emails`)

// result is what a connection reports about one job, for the recorder.
type result struct {
	j    job
	kind string // sent, fail, temp, requeue (the server unreachable, or refusing the sender), drop (an erased subscriber), ack (a duplicate job); empty for nothing to record
	o    outcome
	done chan struct{} // closed once committed (or given up: the job then stays pending)
}

// takeScript takes a recipient for sending, right before the SMTP transaction: KEYS meta, delivery, sending, jobs;
// ARGV the group, the consumer, the job's entry, the address. It answers {what, the delivery record}, what being
// ok (send: the recipient is marked as being sent by this job; keepClaims renews the claim), gone (the campaign is not
// in Redis), lost (another worker has claimed the job since), done (the recipient has a final outcome) or busy
// (another job of the recipient's is being sent by a worker that holds it). A job whose worker died after taking
// it is taken again by the worker that claims it: its message may have gone out, the one duplicate left.
var takeScript = redis.NewScript("#!lua\n" + pendingLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
if not pending(KEYS[4], ARGV[1], ARGV[3], ARGV[2]) then return {'lost', ''} end
local prev = redis.call('HGET', KEYS[2], ARGV[4]) or ''
if prev == 'sent' or prev == 'failed' then return {'done', prev} end
local holder = redis.call('HGET', KEYS[3], ARGV[4])
if holder and holder ~= ARGV[3] and pending(KEYS[4], ARGV[1], holder) then
  return {'busy', prev}
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
return {'ok', prev}`)

// take runs takeScript for a job; on "ok" it updates the job's delivery record.
func (w *Worker) take(ctx context.Context, j *job) (string, error) {
	k := campaignKeys(j.c.ID)
	res, err := takeScript.Run(ctx, w.rdb, []string{k.meta, k.delivery, k.sending, k.jobs}, workerGroup, w.consumer, j.id, j.email).StringSlice()
	if err != nil {
		return "", err
	}
	j.prev = res[1]
	return res[0], nil
}

// process sends one job's message, or decides it needs none, and returns what to record. Once the message is
// being sent, nothing cancels it: ctx only stops the wait for the rate limiter.
func (w *Worker) process(ctx context.Context, conn Conn, j job) result {
	ctx, running := context.WithoutCancel(ctx), ctx
	if j.err != nil {
		w.log.Warn("worker: read delivery record", "campaign_id", j.c.ID, "err", j.err)
		return result{}
	}
	if j.prev == "sent" || j.prev == "failed" {
		return result{j: j, kind: "sent"} // a duplicate job: only acknowledged
	}
	if len(j.sub) == 0 {
		return result{j: j, kind: "drop"} // erased on request: no record may name them
	}
	sub := fromHash(j.sub)
	if sub.Status != Active {
		return result{j: j, kind: "fail", o: outcome{reason: "the subscriber is " + sub.Status}}
	}
	m, err := w.message(ctx, j.c, sub, "")
	if err != nil {
		return result{j: j, kind: "fail", o: outcome{reason: "cannot render: " + oneLine(err.Error())}}
	}
	if err := w.wait(running); err != nil {
		if running.Err() != nil {
			w.release(ctx, j.c.ID, []job{j}) // shutting down
			return result{}
		}
		return result{o: outcome{down: true, reason: "rate limiter: " + err.Error()}}
	}
	switch what, err := w.take(ctx, &j); {
	case err != nil:
		return result{o: outcome{down: true, reason: "take the recipient: " + err.Error()}}
	case what == "done":
		return result{j: j, kind: "sent"} // only acknowledged
	case what == "busy":
		return result{j: j, kind: "ack"}
	case what == "gone":
		w.campaignGone(j.c.ID)
		return result{}
	case what == "lost":
		return result{}
	}
	if err := conn.Send(ctx, m); err != nil {
		o := classify(err)
		if o.down || o.sender {
			// The mail server is unreachable, hung up or refuses the sender: the recipient goes back in the queue
			// without using up an attempt, and this connection waits before it tries again (see Run). A server
			// that goes on refusing the sender (a From it does not take, STARTTLS or AUTH it wants first) pauses
			// the campaign, and nobody is failed for it.
			if o.sender {
				w.failed(ctx, j.c, o)
			}
			return result{j: j, kind: "requeue", o: o}
		}
		kind := "fail"
		if o.temp {
			kind = "temp"
		}
		if j.prev != "retry" && o.code != 0 {
			// Retries are of recipients the server refused before, and come back in bunches: that they fail
			// again says nothing about the server refusing everyone. Nor does a recipient csrdesk could not send
			// to at all (code 0: a UTF-8 address to a server without SMTPUTF8).
			w.failed(ctx, j.c, o)
		}
		if kind == "fail" && o.code >= 500 {
			w.hardBounce(ctx, j.email)
		}
		return result{j: j, kind: kind, o: o}
	}
	w.mu.Lock()
	w.fails[j.c.ID] = 0
	w.mu.Unlock()
	return result{j: j, kind: "sent"}
}

// recorder commits outcomes until in is closed. It gathers a group for up to recordLinger after the first
// outcome, or until every connection has reported, and writes it in one script per campaign: fewer, larger
// commits cost Redis and this process much less than one per message, and a connection has its next message to
// send in the meantime.
func (w *Worker) recorder(ctx context.Context, in <-chan result) {
	var group []result
	for r := range in {
		group = append(group[:0], r)
		linger := time.NewTimer(recordLinger)
	more:
		for len(group) < w.cfg.Conns {
			select {
			case r, ok := <-in:
				if !ok {
					break more
				}
				group = append(group, r)
			case <-linger.C:
				break more
			}
		}
		linger.Stop()
		w.commit(ctx, group)
		for _, r := range group {
			w.unhold(r.j)
			close(r.done)
		}
	}
}

const recordLinger = time.Millisecond

func (w *Worker) commit(ctx context.Context, group []result) {
	byCampaign := map[int64][]any{}
	now := time.Now()
	for _, r := range group {
		id := r.j.c.ID
		if byCampaign[id] == nil {
			byCampaign[id] = []any{workerGroup, w.cfg.MaxAttempts, now.UnixMilli(), w.cfg.RetryBase.Milliseconds()}
		}
		var failure []byte
		if r.kind != "sent" {
			failure, _ = json.Marshal(Failure{Email: r.j.email, Code: r.o.code, Reason: r.o.reason, At: now.UTC()})
		}
		byCampaign[id] = append(byCampaign[id], r.j.email, r.kind, r.j.id, failure)
	}
	// Redis may be restarting, or full: try again for as long as it takes rather than leave messages already sent
	// unrecorded, to be sent again by whoever claims their jobs (keepClaims keeps them ours meanwhile). The
	// connections wait, so nothing more goes out unrecorded. Only shutting down gives up, after Drain.
	var giveUp time.Time // set once shutting down, for the whole group
	for id, args := range byCampaign {
		k := campaignKeys(id)
		for try, wait := 1, 50*time.Millisecond; ; try, wait = try+1, min(2*wait, 2*time.Second) {
			n, err := recordScript.Run(context.WithoutCancel(ctx), w.rdb, []string{k.delivery, k.counts, k.jobs, k.attempts, k.retry, k.failures, k.sending, k.meta}, args...).Int()
			if err == nil {
				if n < 0 {
					w.campaignGone(id)
				}
				break
			}
			w.noteRedisTrouble()
			if giveUp.IsZero() && ctx.Err() != nil {
				giveUp = time.Now().Add(w.cfg.Drain)
			}
			if giveUp.IsZero() || time.Now().Before(giveUp) {
				level := slog.LevelWarn
				if try%30 == 0 { // a minute of it: Redis is not just restarting
					level = slog.LevelError
				}
				w.log.Log(ctx, level, "worker: record outcomes; trying again, sending nothing meanwhile", "campaign_id", id, "tries", try, "wait", wait, "err", err)
				time.Sleep(wait)
				continue
			}
			w.log.Error("worker: shutting down with outcomes not recorded; their jobs are claimed again and sent again if they were sent",
				"campaign_id", id, "outcomes", (len(args)-4)/4, "err", err)
			break
		}
	}
}

// campaignGone says, once per campaign, that Redis no longer has a campaign this worker holds jobs of.
func (w *Worker) campaignGone(id int64) {
	w.mu.Lock()
	said := w.gone[id]
	w.gone[id] = true
	w.mu.Unlock()
	if !said {
		w.log.Error("worker: the campaign is gone from Redis (did it lose its data?); its outcomes are not written", "campaign_id", id)
	}
}

// failed counts consecutive failures and pauses a campaign when the server seems to refuse everything.
func (w *Worker) failed(ctx context.Context, c *Campaign, o outcome) {
	w.mu.Lock()
	w.fails[c.ID]++
	n := w.fails[c.ID]
	w.mu.Unlock()
	if w.cfg.PauseAfter > 0 && n == w.cfg.PauseAfter {
		reason := fmt.Sprintf("paused by itself after %d failures in a row; last: %d %s", n, o.code, o.reason)
		if err := transitionScript.Run(ctx, w.rdb, []string{campaignKeys(c.ID).meta}, Paused, reason, Running).Err(); err != nil {
			w.log.Error("campaign: the mail server refuses everything, and the campaign could not be paused", "campaign_id", c.ID, "reason", reason, "err", err)
			w.mu.Lock()
			w.fails[c.ID] = 0 // try to pause it again after as many failures more
			w.mu.Unlock()
			return
		}
		w.log.Error("campaign paused: the mail server refuses everything", "campaign_id", c.ID, "reason", reason)
	}
}

func (w *Worker) hardBounce(ctx context.Context, email string) {
	n, err := w.rdb.HIncrBy(ctx, subKey(email), "hard_bounces", 1).Result()
	if err != nil {
		w.log.Warn("worker: count a hard bounce", "err", err)
		return
	}
	if w.cfg.HardBounces > 0 && n >= int64(w.cfg.HardBounces) {
		if err := w.rdb.HSet(ctx, subKey(email), "status", Bounced).Err(); err != nil {
			w.log.Warn("worker: mark a subscriber bounced", "err", err)
		}
	}
}

// wait takes a token from the rate limiter all workers share.
func (w *Worker) wait(ctx context.Context) error {
	if w.cfg.Rate <= 0 {
		return nil
	}
	for {
		res, err := w.limiter.Allow(ctx, rdb.MailRate, redis_rate.PerSecond(w.cfg.Rate))
		if err != nil {
			return err
		}
		if res.Allowed > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(res.RetryAfter):
		}
	}
}

// segment returns the campaign's compiled segment (nil for everybody), compiled once per worker.
func (w *Worker) segment(c *Campaign) (*vm.Program, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p, ok := w.segments[c.ID]; ok {
		return p, nil
	}
	p, err := compileSegment(c.Segment) // checked when the campaign was created
	if err != nil {
		return nil, err
	}
	w.segments[c.ID] = p
	return p, nil
}

// mailing returns the campaign's compiled content, compiled once per worker.
func (w *Worker) mailing(ctx context.Context, c *Campaign) (*Mailing, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.mailings[c.ID]; ok {
		return m, nil
	}
	m, err := w.store.mailing(ctx, c, w.layout, w.cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	w.mailings[c.ID] = m
	return m, nil
}

// followEvent drops a campaign's compiled content when its event has changed since, so that the mails sent
// from now on carry the new version.
func (w *Worker) followEvent(ctx context.Context, c *Campaign) {
	ev, err := w.store.Event(ctx, c.Event)
	if err != nil {
		return // the mails go out with the version compiled
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.mailings[c.ID]; ok && m.eventSeq != ev.Sequence {
		delete(w.mailings, c.ID)
	}
}

// message builds a recipient's mail; prefix goes in front of its subject ("[TEST] " for a test mail).
func (w *Worker) message(ctx context.Context, c *Campaign, sub *Subscriber, prefix string) (*Message, error) {
	mailing, r, unsubURL, token, err := w.render(ctx, c, sub)
	if err != nil {
		return nil, err
	}
	r.Subject = prefix + r.Subject
	returnPath := c.From
	if sub.ID != "" {
		returnPath = VERP(w.cfg.Bounces, c, sub)
	}
	return writeMessage(c, sub, r, unsubURL, token, returnPath, &mailing.lines, w.cfg.DKIM)
}

// render renders a recipient's mail with their unsubscribe link (unsubURL, carrying token), and returns the
// compiled campaign it came from.
func (w *Worker) render(ctx context.Context, c *Campaign, sub *Subscriber) (m *Mailing, r Rendered, unsubURL, token string, err error) {
	if m, err = w.mailing(ctx, c); err != nil {
		return nil, Rendered{}, "", "", err
	}
	token = UnsubscribeToken(w.cfg.Secret, sub)
	unsubURL = strings.TrimRight(w.cfg.PublicURL, "/") + "/unsubscribe/" + token
	r, err = m.Render(sub, unsubURL)
	return m, r, unsubURL, token, err
}

// VERP is the return path of a campaign's mail to one subscriber, base+<campaign>-<subscriber id>@domain, so
// that a bounce names who bounced even when the report itself does not (see ParseBounce).
func VERP(base string, c *Campaign, sub *Subscriber) string {
	if base == "" {
		base = "bounces@" + c.From[strings.LastIndexByte(c.From, '@')+1:]
	}
	at := strings.LastIndexByte(base, '@')
	return fmt.Sprintf("%s+%d-%s%s", base[:at], c.ID, sub.ID, base[at:])
}
