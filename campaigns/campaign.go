package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/templates"
)

// Campaign states.
const (
	Draft     = "draft"
	Scheduled = "scheduled"
	Running   = "running"
	Paused    = "paused"
	Finished  = "finished"
	Cancelled = "cancelled"
)

// Campaign is a mailing to the active subscribers of one or more lists.
type Campaign struct {
	ID      int64     `json:"id"`
	Name    string    `json:"name"`
	Lists   []string  `json:"lists"`
	Segment string    `json:"segment,omitempty"` // an expression that narrows the recipients (see segment.go)
	From    string    `json:"from"`
	Content Content   `json:"content"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"` // why it paused by itself
	SendAt  time.Time `json:"send_at,omitzero"`
	Event   string    `json:"event,omitempty"` // an event (see event.go) every mail invites to, with its .ics`
	// A reminder: sent this long before its event starts, and moved when the event moves (see FollowEvent).
	SendBefore time.Duration `json:"send_before,omitempty"`
	Created    time.Time     `json:"created"`
	Started    time.Time     `json:"started,omitzero"`
	Finished   time.Time     `json:"finished,omitzero"`
}

// Status is a campaign's progress.
type Status struct {
	ID       int64  `json:"id"`
	State    string `json:"state"`
	Total    int64  `json:"total"`    // recipients queued so far (all of them once queueing is done)
	Sent     int64  `json:"sent"`     // accepted by the mail server
	Failed   int64  `json:"failed"`   // refused for good
	Pending  int64  `json:"pending"`  // queued, not yet sent
	Retrying int64  `json:"retrying"` // waiting for another try after a temporary refusal
}

// A campaign's keys share the hash tag {c<ID>}, so that its scripts stay in one Redis Cluster slot.
type keys struct{ meta, jobs, queued, cursor, lock, delivery, sending, attempts, failures, retry, counts string }

func campaignKeys(id int64) keys {
	s := strconv.FormatInt(id, 10)
	k := func(part string) string { return rdb.CampaignKey(s, part) }
	return keys{meta: k("meta"), jobs: k("jobs"), queued: k("queued"), cursor: k("cursor"), lock: k("cursor:lock"), delivery: k("delivery"),
		sending: k("sending"), attempts: k("attempts"), failures: k("failures"), retry: k("retry"), counts: k("counts")}
}

const (
	campaignsKey = rdb.Campaigns       // sorted set of campaign ids by creation
	seqKey       = rdb.CampaignsSeq    // the last id
	activeKey    = rdb.CampaignsActive // ids of scheduled and running campaigns, for the workers
	workerGroup  = "workers"
)

// CreateCampaign stores a new draft campaign after checking its lists exist and its templates compile.
func (s *Store) CreateCampaign(ctx context.Context, c Campaign, check func(Content) error) (*Campaign, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("campaign: %w: a name is required", ErrInvalid)
	}
	if len(c.Lists) == 0 {
		return nil, fmt.Errorf("campaign: %w: at least one --list is required", ErrInvalid)
	}
	for _, l := range c.Lists {
		if err := s.listExists(ctx, l); err != nil {
			return nil, err
		}
	}
	if _, err := NormalizeEmail(c.From); err != nil {
		return nil, fmt.Errorf("campaign: %w: from: %v", ErrInvalid, err)
	}
	if err := check(c.Content); err != nil {
		return nil, err
	}
	if _, err := compileSegment(c.Segment); err != nil {
		return nil, err
	}
	if c.SendBefore != 0 && (c.Event == "" || c.SendBefore < 0) {
		return nil, fmt.Errorf("campaign: %w: send before needs an event, and a positive time", ErrInvalid)
	}
	if c.Event != "" {
		ev, err := s.Event(ctx, c.Event)
		if err != nil {
			return nil, fmt.Errorf("campaign: %w", err)
		}
		if c.SendBefore > 0 {
			if c.SendAt = ev.Start.Add(-c.SendBefore); c.SendAt.Before(s.now()) {
				return nil, fmt.Errorf("campaign: %w: %s before the event is %s, already past", ErrInvalid, c.SendBefore, c.SendAt.Format(time.RFC3339))
			}
		}
	}
	id, err := rdb.NextID(ctx, s.rdb, seqKey)
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	c.ID, c.State, c.Created = id, Draft, s.now().UTC()
	if err := s.saveCampaign(ctx, &c); err != nil {
		return nil, err
	}
	if err := s.rdb.ZAdd(ctx, campaignsKey, redis.Z{Score: float64(id), Member: id}).Err(); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	return &c, nil
}

func (s *Store) saveCampaign(ctx context.Context, c *Campaign) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, campaignKeys(c.ID).meta, "json", data, "state", c.State).Err()
}

// Campaign returns a campaign.
func (s *Store) Campaign(ctx context.Context, id int64) (*Campaign, error) {
	v, err := s.rdb.HGetAll(ctx, campaignKeys(id).meta).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("campaign %d: %w", id, ErrNotFound)
	}
	var c Campaign
	if err := json.Unmarshal([]byte(v["json"]), &c); err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	c.State, c.Reason = v["state"], v["reason"]
	if f := v["finished"]; f != "" {
		c.Finished, _ = time.Parse(time.RFC3339Nano, f)
	}
	if f := v["started"]; f != "" {
		c.Started, _ = time.Parse(time.RFC3339Nano, f)
	}
	return &c, nil
}

// transitions lists which states each operation may start from.
var transitions = map[string]struct {
	from []string
	to   string
}{
	"start":  {[]string{Draft}, Running},
	"pause":  {[]string{Running, Scheduled}, Paused},
	"resume": {[]string{Paused}, Running},
	"cancel": {[]string{Draft, Scheduled, Running, Paused}, Cancelled},
}

var transitionScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, ''} end
for i = 3, #ARGV do
  if ARGV[i] == state then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2])
    return {1, state}
  end
end
return {0, state}`)

// ErrState is a campaign operation its state does not allow.
var ErrState = errors.New("not allowed in this state")

// Transition applies start, pause, resume or cancel. Starting a campaign with a send time in the future
// schedules it instead.
func (s *Store) Transition(ctx context.Context, id int64, op string) (*Campaign, error) {
	t, ok := transitions[op]
	if !ok {
		return nil, fmt.Errorf("campaign: %w: unknown operation %q", ErrInvalid, op)
	}
	c, err := s.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	to := t.to
	if op == "start" && c.SendAt.After(s.now()) {
		to = Scheduled
	}
	args := []any{to, ""}
	for _, f := range t.from {
		args = append(args, f)
	}
	res, err := transitionScript.Run(ctx, s.rdb, []string{campaignKeys(id).meta}, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if res[0].(int64) == 0 {
		return nil, fmt.Errorf("campaign %d is %s: %s is %w", id, res[1], op, ErrState)
	}
	switch to {
	case Running, Scheduled:
		// Active first: a campaign in its new state that the workers do not know of would never be sent.
		err = s.rdb.SAdd(ctx, activeKey, id).Err()
		if op == "start" && err == nil {
			err = s.rdb.HSet(ctx, campaignKeys(id).meta, "started", s.now().UTC().Format(time.RFC3339Nano)).Err()
		}
	case Cancelled:
		err = s.rdb.SRem(ctx, activeKey, id).Err()
	}
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	return s.Campaign(ctx, id)
}

// CampaignStatus returns a campaign's counts.
func (s *Store) CampaignStatus(ctx context.Context, id int64) (*Status, error) {
	k := campaignKeys(id)
	pipe := s.rdb.Pipeline()
	state := pipe.HGet(ctx, k.meta, "state")
	counts := pipe.HGetAll(ctx, k.counts)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if state.Val() == "" {
		return nil, fmt.Errorf("campaign %d: %w", id, ErrNotFound)
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(counts.Val()[k], 10, 64); return v }
	st := &Status{ID: id, State: state.Val(), Total: n("total"), Sent: n("sent"), Failed: n("failed"), Retrying: n("retrying")}
	st.Pending = st.Total - st.Sent - st.Failed - st.Retrying
	return st, nil
}

// Failure is a recipient the mail server refused for good.
type Failure struct {
	Email  string    `json:"email"`
	Code   int       `json:"code"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// ActiveStatuses returns the status of every campaign scheduled, running or paused.
func (s *Store) ActiveStatuses(ctx context.Context) ([]*Status, error) {
	ids, err := s.rdb.SMembers(ctx, activeKey).Result()
	if err != nil {
		return nil, err
	}
	var out []*Status
	for _, v := range ids {
		id, _ := strconv.ParseInt(v, 10, 64)
		st, err := s.CampaignStatus(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Failures returns a campaign's final failures.
func (s *Store) Failures(ctx context.Context, id int64) ([]Failure, error) {
	v, err := s.rdb.HGetAll(ctx, campaignKeys(id).failures).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	var out []Failure
	for _, data := range v {
		var f Failure
		if json.Unmarshal([]byte(data), &f) == nil {
			out = append(out, f)
		}
	}
	return out, nil
}

// resendScript puts a campaign's failed recipients back in its queue, and the campaign back to running.
var resendScript = redis.NewScript(`
local fails = redis.call('HKEYS', KEYS[2])
if #fails == 0 then return 0 end -- nothing to do, and Lua would pass HINCRBY -#fails as "-0", not an integer
for _, e in ipairs(fails) do
  redis.call('HDEL', KEYS[1], e)
  redis.call('HDEL', KEYS[2], e)
  redis.call('HDEL', KEYS[5], e)
  redis.call('XADD', KEYS[4], '*', 'e', e)
end
redis.call('HINCRBY', KEYS[3], 'failed', -#fails)
if #fails > 0 and redis.call('HGET', KEYS[6], 'state') == 'finished' then
  redis.call('HSET', KEYS[6], 'state', 'running')
end
return #fails`)

// ResendFailed queues the recipients that failed once more (those who are still active get the mail).
func (s *Store) ResendFailed(ctx context.Context, id int64) (int, error) {
	c, err := s.Campaign(ctx, id)
	if err != nil {
		return 0, err
	}
	if c.State == Draft || c.State == Cancelled {
		return 0, fmt.Errorf("campaign %d is %s: resend-failed is %w", id, c.State, ErrState)
	}
	k := campaignKeys(id)
	n, err := resendScript.Run(ctx, s.rdb, []string{k.delivery, k.failures, k.counts, k.jobs, k.attempts, k.meta}).Int()
	if err != nil {
		return 0, fmt.Errorf("campaign %d: %w", id, err)
	}
	if n > 0 {
		if err := s.rdb.SAdd(ctx, activeKey, id).Err(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Preview renders a campaign for a subscriber (or a sample one).
func (s *Store) Preview(ctx context.Context, id int64, email string, layout *templates.Mail, cfg WorkerConfig) (Rendered, error) {
	c, err := s.Campaign(ctx, id)
	if err != nil {
		return Rendered{}, err
	}
	sub := sample
	if email != "" {
		if sub, err = s.Subscriber(ctx, email); err != nil {
			return Rendered{}, err
		}
	}
	m, err := s.mailing(ctx, c, layout, cfg.PublicURL)
	if err != nil {
		return Rendered{}, err
	}
	return m.Render(sub, strings.TrimRight(cfg.PublicURL, "/")+"/unsubscribe/"+UnsubscribeToken(cfg.Secret, sub))
}

// mailing compiles a campaign's content, with its event if it has one.
func (s *Store) mailing(ctx context.Context, c *Campaign, layout *templates.Mail, publicURL string) (*Mailing, error) {
	m, err := Compile(c.Content, layout)
	if err != nil || c.Event == "" {
		return m, err
	}
	ev, err := s.Event(ctx, c.Event)
	if err != nil {
		return nil, err
	}
	return m, m.SetEvent(ev, publicURL, s.now())
}

// SendTest sends one message of a campaign to an address, as the subscriber with that address if there is one.
func (s *Store) SendTest(ctx context.Context, id int64, to string, layout *templates.Mail, t Transport, cfg WorkerConfig) error {
	to, err := NormalizeEmail(to)
	if err != nil {
		return fmt.Errorf("campaign test: %w: %v", ErrInvalid, err)
	}
	c, err := s.Campaign(ctx, id)
	if err != nil {
		return err
	}
	sub, err := s.Subscriber(ctx, to)
	if errors.Is(err, ErrNotFound) {
		cp := *sample
		cp.Email = to
		sub = &cp
	} else if err != nil {
		return err
	}
	w := NewWorker(s, t, layout, cfg, slog.New(slog.DiscardHandler))
	m, err := w.message(ctx, c, sub, "[TEST] ")
	if err != nil {
		return fmt.Errorf("campaign test: %w", err)
	}
	conn, err := t.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Send(ctx, m); err != nil {
		return fmt.Errorf("campaign test: %w", err)
	}
	return nil
}
