package campaigns

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
	"csrdesk/internal/smtptest"

	"github.com/redis/go-redis/v9"
)

// takeoverConfig is a worker whose claims on jobs lapse fast, so that a wait of a second looks to the other worker
// like a dead one's jobs.
func takeoverConfig() WorkerConfig {
	cfg := DefaultWorkerConfig()
	cfg.Conns, cfg.ClaimIdle, cfg.PauseAfter = 4, 300*time.Millisecond, 0
	return cfg
}

func checkOnce(t *testing.T, sk *smtptest.Sink, st *Status, n int) {
	t.Helper()
	recipients, messages, dups := sk.Counts()
	if st.Sent != int64(n) || st.Failed != 0 || recipients != n || messages != n || len(dups) != 0 {
		t.Errorf("status %+v; the sink got %d recipients, %d messages, %d sent twice (%v)", st, recipients, messages, len(dups), dups)
	}
}

// A mail server down for longer than ClaimIdle: each worker holds a batch while it waits, and keeps its claim on
// it; the one that used to take the other's batch over (both then sent it when the server came back) finds it
// held, and a recipient is taken for sending by exactly one of them.
func TestMailServerDownLongerThanClaimIdle(t *testing.T) {
	sk := smtptest.New(t)
	sk.HangUp(true)
	s, c := startedFixture(t, 600)
	cfg := takeoverConfig()
	run(t, testWorker(t, s, sk.Addr, cfg), testWorker(t, s, sk.Addr, cfg))
	time.Sleep(4 * cfg.ClaimIdle)
	sk.HangUp(false)
	checkOnce(t, sk, waitState(t, s, c.ID, Finished), 600)
}

// A Redis at maxmemory (noeviction) refuses writes: no recipient can be taken or recorded. Nothing is sent twice
// while it is full or after: workers wait, keep their claims (XCLAIM is not refused), and record what they sent
// once Redis takes writes again.
func TestRedisFullMidCampaign(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 3000)
	cfg := takeoverConfig()
	cfg.Rate = 1500
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	w1, w2 := testWorker(t, s, sk.Addr, cfg), testWorker(t, s, sk.Addr, cfg)
	w1.log, w2.log = log, log
	run(t, w1, w2)
	waitSentOver(t, s, c.ID, 300)
	t.Cleanup(func() { s.rdb.ConfigSet(ctx, "maxmemory", "0") })
	if err := s.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * cfg.ClaimIdle)
	_, during, _ := sk.Counts()
	time.Sleep(cfg.ClaimIdle)
	if _, after, _ := sk.Counts(); after != during {
		t.Errorf("%d messages went out while Redis refused writes", after-during)
	}
	s.rdb.ConfigSet(ctx, "maxmemory", "0")
	checkOnce(t, sk, waitState(t, s, c.ID, Finished), 3000)
	if !strings.Contains(buf.String(), "OOM") {
		t.Errorf("the workers did not say Redis refused writes:\n%.2000s", buf.String())
	}
}

// A campaign that vanished from Redis (it lost its data) gets no records written by the workers that held its
// jobs: they say so at ERROR level instead of recreating its keys.
func TestCampaignGoneMidSend(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 2000)
	cfg := takeoverConfig()
	cfg.Rate, cfg.ClaimIdle = 200, 2*time.Second // a batch of 100 in hand at any time
	var buf syncBuffer
	w := testWorker(t, s, sk.Addr, cfg)
	w.log = slog.New(slog.NewTextHandler(&buf, nil))
	stop := run(t, w)
	waitSentOver(t, s, c.ID, 100)
	s.rdb.FlushDB(ctx)
	time.Sleep(500 * time.Millisecond)
	stop()
	k := campaignKeys(c.ID)
	if n := s.rdb.Exists(ctx, k.meta, k.delivery, k.counts, k.jobs, k.sending, k.failures).Val(); n != 0 {
		keys, _ := s.rdb.Keys(ctx, "*").Result()
		t.Errorf("%d keys of the vanished campaign were written again: %v", n, keys)
	}
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "gone from Redis") {
		t.Errorf("no ERROR about the vanished campaign:\n%s", buf.String())
	}
}

// syncBuffer is a bytes.Buffer for a logger that several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// failingTransport opens ok connections until the n-th, which fails; it counts what is open.
type failingTransport struct {
	mu        sync.Mutex
	n, opened int
	open      int
}

func (f *failingTransport) Open() (Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened++
	if f.opened == f.n {
		return nil, errors.New("connection refused")
	}
	f.open++
	return &countedConn{f: f}, nil
}

type countedConn struct{ f *failingTransport }

func (c *countedConn) Send(context.Context, *Message) error { return nil }
func (c *countedConn) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.open--
	return nil
}

// A worker whose third connection cannot be opened returns the error and leaves nothing behind: the two it
// opened are closed and none of its goroutines keeps running.
func TestWorkerRunFailsCleanly(t *testing.T) {
	s := mustStore(t)
	tr := &failingTransport{n: 3}
	before := runtime.NumGoroutine()
	w := NewWorker(s, tr, mustLayout(t), DefaultWorkerConfig(), slog.New(slog.DiscardHandler))
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run: %v", err)
	}
	if tr.open != 0 {
		t.Errorf("%d connections left open", tr.open)
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before Run, %d after", before, runtime.NumGoroutine())
		}
	}
}

// A worker forgets the campaigns it no longer works on: a long-running one would otherwise keep every mailing
// it ever compiled.
func TestWorkerForgetsFinishedCampaigns(t *testing.T) {
	sk := smtptest.New(t)
	s, c := startedFixture(t, 20)
	w := testWorker(t, s, sk.Addr, DefaultWorkerConfig())
	run(t, w)
	waitState(t, s, c.ID, Finished)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.mailings) + len(w.segments) + len(w.groups) + len(w.fails) + len(w.lastClaim) + len(w.held)
		w.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker still keeps %d entries about the finished campaign: %v %v %v %v %v %v", n, w.mailings, w.segments, w.groups, w.fails, w.lastClaim, w.held)
		}
	}
}

// The scheduling lock is released only by the worker holding it: one that expired while its worker was busy may
// be another's by then.
func TestUnlockOnlyOwnLock(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t)
	s.rdb.Set(ctx, "lock", "other", time.Minute)
	unlockScript.Run(ctx, s.rdb, []string{"lock"}, "me")
	if s.rdb.Get(ctx, "lock").Val() != "other" {
		t.Error("another worker's lock was deleted")
	}
	unlockScript.Run(ctx, s.rdb, []string{"lock"}, "other")
	if s.rdb.Exists(ctx, "lock").Val() != 0 {
		t.Error("the holder could not release its lock")
	}
}

// The count of confirmation mails to an address always expires, even one left without an expiry (an EXPIRE that
// failed after its INCR): otherwise the address could never be sent a confirmation again.
func TestConfirmationCountExpires(t *testing.T) {
	ctx := context.Background()
	s, sub, _ := mustSubscriptions(t, smtptest.New(t))
	key := rdb.SubsPrefix + "confirm-mails:" + SuppressionHash("lea@example.fr")
	s.rdb.Set(ctx, key, 1, 0)
	if err := sub.allow(ctx, "lea@example.fr"); err != nil {
		t.Fatal(err)
	}
	if ttl := s.rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > 24*time.Hour {
		t.Errorf("the count's expiry is %s, want up to a day", ttl)
	}
}

// Shutting down while Redis refuses writes, with outcomes of two campaigns in one group: the worker gives up on
// both after Drain, not only on the first (the give-up was a timer that fired once).
func TestCommitGivesUpOnEveryCampaignAtShutdown(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c1 := startedFixture(t, 3)
	cfg := DefaultWorkerConfig()
	cfg.Drain = 300 * time.Millisecond
	w := testWorker(t, s, sk.Addr, cfg)
	c2 := &Campaign{ID: c1.ID + 1000}
	t.Cleanup(func() { s.rdb.ConfigSet(ctx, "maxmemory", "0") })
	if err := s.rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	group := []result{
		{j: job{c: c1, id: "1-1", email: "a@example.com"}, kind: "sent"},
		{j: job{c: c2, id: "1-2", email: "b@example.com"}, kind: "sent"},
	}
	done := make(chan struct{})
	go func() { w.commit(stopped, group); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("commit still retrying 5 s after shutdown with Drain %s", cfg.Drain)
	}
}

// readOne schedules a campaign's recipients and reads one job for w.
func readOne(t *testing.T, s *Store, w *Worker, c *Campaign) job {
	t.Helper()
	ctx := context.Background()
	k := campaignKeys(c.ID)
	rdb.EnsureGroup(ctx, s.rdb, k.jobs, workerGroup, "0")
	if err := w.schedule(ctx, c); err != nil {
		t.Fatal(err)
	}
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workerGroup, Consumer: w.consumer, Streams: []string{k.jobs, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res[0].Messages) != 1 {
		t.Fatal(res, err)
	}
	m := res[0].Messages[0]
	return job{c: c, id: m.ID, email: m.Values["e"].(string)}
}

// An address erased while its mail is being sent is not written back when the send is recorded, nor counted
// twice: the erasure settled the job (counted it failed), and the record of a settled job writes nothing.
func TestEraseDuringSend(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 1)
	w := testWorker(t, s, sk.Addr, DefaultWorkerConfig())
	j := readOne(t, s, w, c)
	if what, err := w.take(ctx, &j); what != "ok" {
		t.Fatal(what, err)
	}
	if err := s.Erase(ctx, j.email); err != nil { // the SMTP transaction is under way
		t.Fatal(err)
	}
	w.commit(ctx, []result{{j: j, kind: "sent"}})
	k := campaignKeys(c.ID)
	if v, _ := s.rdb.HGet(ctx, k.delivery, j.email).Result(); v != "" {
		t.Errorf("the erased address is in the delivery record again: %q", v)
	}
	if cnt := s.rdb.HGetAll(ctx, k.counts).Val(); cnt["sent"] == "1" && cnt["failed"] == "1" {
		t.Errorf("one recipient counted both sent and failed: %v", cnt)
	}
}

// A worker gives back only the jobs still its own: one another worker claimed (and is sending) is left alone,
// else its copy, taken by a third worker, would be sent too.
func TestReleaseLeavesAnotherWorkersJob(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 1)
	w1, w2, w3 := testWorker(t, s, sk.Addr, DefaultWorkerConfig()), testWorker(t, s, sk.Addr, DefaultWorkerConfig()), testWorker(t, s, sk.Addr, DefaultWorkerConfig())
	w2.consumer, w3.consumer = w1.consumer+"-2", w1.consumer+"-3"
	j := readOne(t, s, w1, c)
	k := campaignKeys(c.ID)
	s.rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: k.jobs, Group: workerGroup, Consumer: w2.consumer, Messages: []string{j.id}})
	j2 := j
	if what, _ := w2.take(ctx, &j2); what != "ok" {
		t.Fatal(what)
	}
	w1.release(ctx, c.ID, []job{j})
	if p := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: k.jobs, Group: workerGroup, Start: j.id, End: j.id, Count: 1, Consumer: w2.consumer}).Val(); len(p) != 1 {
		t.Errorf("w2's job is no longer pending with w2 after w1 gave back its copy: %v", p)
	}
	res, _ := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: workerGroup, Consumer: w3.consumer, Streams: []string{k.jobs, ">"}, Count: 1, Block: -1}).Result()
	if len(res) > 0 && len(res[0].Messages) > 0 {
		j3 := job{c: c, id: res[0].Messages[0].ID, email: j.email}
		if what, _ := w3.take(ctx, &j3); what == "ok" {
			t.Errorf("w2 is sending to %s and w3 may send too: w1 gave back w2's job", j.email)
		}
	}
}

// Redis away (data kept) for longer than ClaimIdle while two live workers hold jobs: when it is back every job
// looks idle, but a worker that just saw Redis fail claims nothing for ClaimIdle, and the live holders renew
// their claims first.
func TestRedisAwayLongerThanClaimIdle(t *testing.T) {
	ctx := context.Background()
	srv := rdbtest.Own(t)
	s := NewStore(srv.Client(t))
	if err := s.CreateList(ctx, List{Name: "all"}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	c := campaignFor(t, s, n)
	mustStart(t, s, c)
	sk := smtptest.New(t)
	cfg := takeoverConfig()
	cfg.Rate = 1000
	run(t, testWorker(t, s, sk.Addr, cfg), testWorker(t, s, sk.Addr, cfg))
	waitSentOver(t, s, c.ID, 500)
	srv.Kill(syscall.SIGTERM)
	time.Sleep(4 * cfg.ClaimIdle)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, sk, waitState(t, s, c.ID, Finished), n)
}
