package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// flaky is a Sender that fails as told, and records what it delivered.
type flaky struct {
	mu        sync.Mutex
	delivered map[string][]string
	calls     map[string]int
	failFirst int           // transient failures before the first success, per chat
	rateFirst time.Duration // a RetryAfter of this on each chat's first call
	gone      string        // a chat that is refused for good
	block     chan struct{} // when set, Deliver waits on it (a process stuck mid-send)
}

func (f *flaky) Deliver(ctx context.Context, chat string, r Reply) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[chat]++
	switch {
	case chat == f.gone:
		return &Permanent{Err: errors.New("chat not found")}
	case f.rateFirst > 0 && f.calls[chat] == 1:
		return &RetryAfter{Wait: f.rateFirst}
	case f.calls[chat] <= f.failFirst:
		return errors.New("502 bad gateway")
	}
	f.delivered[chat] = append(f.delivered[chat], r.Text)
	return nil
}

func (f *flaky) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.delivered {
		n += len(d)
	}
	return n
}

func newFlaky() *flaky { return &flaky{delivered: map[string][]string{}, calls: map[string]int{}} }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOutboxDeliversInOrderThroughFailures(t *testing.T) {
	ctx := context.Background()
	rdb := redisSrv.Client(t)
	s := newFlaky()
	s.failFirst, s.rateFirst, s.gone = 3, 50*time.Millisecond, "gone"
	o := NewOutbox("test", rdb, s, slog.New(slog.DiscardHandler))
	o.Backoff = 10 * time.Millisecond
	for i := range 10 {
		for _, chat := range []string{"a", "b", "gone"} {
			if err := o.Send(ctx, chat, Reply{Text: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go o.Run(rctx)
	waitUntil(t, "20 deliveries", func() bool { return s.count() == 20 })
	waitUntil(t, "an empty outbox", func() bool { n, _ := o.Pending(ctx); return n == 0 })
	for _, chat := range []string{"a", "b"} {
		if got := fmt.Sprint(s.delivered[chat]); got != "[0 1 2 3 4 5 6 7 8 9]" {
			t.Errorf("chat %s got %s, want every reply once, in order", chat, got)
		}
	}
	if len(s.delivered["gone"]) != 0 || s.calls["gone"] != 10 {
		t.Errorf("a chat refused for good: %d calls, %d delivered; want each reply tried once and dropped", s.calls["gone"], len(s.delivered["gone"]))
	}
}

func TestOutboxSurvivesAProcessThatDies(t *testing.T) {
	ctx := context.Background()
	rdb := redisSrv.Client(t)
	stuck := newFlaky()
	stuck.block = make(chan struct{}) // never released: the process "dies" mid-send
	first := NewOutbox("test", rdb, stuck, slog.New(slog.DiscardHandler))
	first.Claim = 300 * time.Millisecond
	for i := range 5 {
		first.Send(ctx, "a", Reply{Text: fmt.Sprint(i)})
	}
	dead, kill := context.WithCancel(ctx)
	go first.Run(dead)
	time.Sleep(200 * time.Millisecond) // it has read the replies
	kill()

	s := newFlaky()
	second := NewOutbox("test", rdb, s, slog.New(slog.DiscardHandler))
	second.Claim = 300 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go second.Run(rctx)
	waitUntil(t, "the replies of the dead process", func() bool { return s.count() == 5 })
	if got := fmt.Sprint(s.delivered["a"]); got != "[0 1 2 3 4]" {
		t.Errorf("after takeover: %s", got)
	}
}
