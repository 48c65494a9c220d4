package campaigns

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"csrdesk/internal/smtptest"
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
	for {
		if st, _ := s.CampaignStatus(ctx, c.ID); st.Sent > 300 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	for {
		if st, _ := s.CampaignStatus(ctx, c.ID); st.Sent > 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
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
