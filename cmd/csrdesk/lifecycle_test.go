package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLifecycleAbandonsAtTheDeadline: a part that does not stop is abandoned once the deadline after the stop
// has passed, and the log names it and what becomes of its work.
func TestLifecycleAbandonsAtTheDeadline(t *testing.T) {
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	lc := newLifecycle(ctx, 200*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	stuck := make(chan struct{})
	defer close(stuck)
	lc.OnAbandon("stuck", "its jobs stay pending")
	lc.Go("stuck", func(context.Context) error { <-stuck; return nil })
	lc.Go("polite", func(ctx context.Context) error { <-ctx.Done(); return nil })
	time.Sleep(300 * time.Millisecond) // the deadline runs from the stop, not from the start
	cancel()
	start := time.Now()
	err := lc.Wait()
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("Wait returned %s after the stop, want about the 200ms deadline", took)
	}
	if !errors.Is(err, errDeadline) || !strings.Contains(err.Error(), "stuck") || strings.Contains(err.Error(), "polite") {
		t.Errorf("Wait: %v, want the deadline error naming only the stuck part", err)
	}
	if log := logs.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "part=stuck") || !strings.Contains(log, `abandoned="its jobs stay pending"`) {
		t.Errorf("log:\n%s", log)
	}
}

// TestLifecycleStopsWhenAPartFails: one part's error stops the others and is what Wait returns.
func TestLifecycleStopsWhenAPartFails(t *testing.T) {
	lc := newLifecycle(context.Background(), time.Minute, slog.New(slog.DiscardHandler))
	lc.Go("http", func(context.Context) error { return errors.New("address in use") })
	lc.Go("worker", func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := lc.Wait(); err == nil || err.Error() != "http: address in use" {
		t.Errorf("Wait: %v, want the failed part's error", err)
	}
}

// TestWorkerStops: csrdesk worker stops like serve, its drain done before Redis is closed.
func TestWorkerStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_OUTBOX_DIR", t.TempDir(), "CSRDESK_SHUTDOWN_TIMEOUT", "5s")
	go func() { done <- run(ctx, []string{"worker"}, e, nil, logs) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "worker delivering campaigns"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start:\n%s", logs.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker did not stop within its 5s deadline:\n%s", logs.String())
	}
	if log := logs.String(); !strings.Contains(log, "msg=stopped") || strings.Contains(log, "level=ERROR") {
		t.Errorf("log:\n%s", log)
	}
}
