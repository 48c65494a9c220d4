package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// deadlineGrace is how long after the deadline Wait still waits for parts that are cutting off their work.
const deadlineGrace = 200 * time.Millisecond

// errDeadline ends the drain of a shutdown that took longer than CSRDESK_SHUTDOWN_TIMEOUT.
var errDeadline = errors.New("shutdown deadline passed")

// lifecycle runs the long-running parts of a process (the HTTP server, the chat channels, the campaign worker,
// ...) under one errgroup, so that a process stops as one: on SIGTERM, or when any part fails, every part is
// told to stop taking work (ctx is done) and drains what it took; the process waits for all of them, but only
// until the deadline, and closes Redis only once nothing uses it any more.
type lifecycle struct {
	// ctx is done on SIGTERM or when a part fails: parts stop taking new work then.
	ctx context.Context
	// drain is done timeout after ctx: what a part has not finished by then is abandoned.
	drain       context.Context
	cancelDrain context.CancelCauseFunc
	timeout     time.Duration
	stopping    time.Time // when ctx ended; set once, read after Wait
	g           *errgroup.Group
	log         *slog.Logger

	mu      sync.Mutex
	running map[string]int    // the parts that have not returned yet, for the log of an abandoned shutdown
	notes   map[string]string // what becomes of a part's work when it is abandoned, for that log
}

func newLifecycle(ctx context.Context, timeout time.Duration, log *slog.Logger) *lifecycle {
	g, gctx := errgroup.WithContext(ctx)
	drain, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	l := &lifecycle{ctx: gctx, drain: drain, cancelDrain: cancel, timeout: timeout, g: g, log: log, running: map[string]int{}, notes: map[string]string{}}
	// The deadline runs from the moment the parts are told to stop, not from the start of the process.
	stopTimer := context.AfterFunc(gctx, func() {
		l.mu.Lock()
		l.stopping = time.Now()
		l.mu.Unlock()
		time.AfterFunc(timeout, func() { cancel(errDeadline) })
	})
	context.AfterFunc(drain, func() { stopTimer() })
	return l
}

// Go starts a part. fn must return once ctx is done and what it had taken is finished (or handed back); an
// error it returns stops the whole process.
func (l *lifecycle) Go(name string, fn func(ctx context.Context) error) {
	l.mu.Lock()
	l.running[name]++
	l.mu.Unlock()
	l.g.Go(func() error {
		defer func() {
			l.mu.Lock()
			if l.running[name]--; l.running[name] == 0 {
				delete(l.running, name)
			}
			l.mu.Unlock()
		}()
		if err := fn(l.ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// OnAbandon says, for the log, what becomes of the work of part name if the deadline passes before it returns.
func (l *lifecycle) OnAbandon(name, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notes[name] = what
}

// Wait waits until every part has returned, or until the deadline after the stop (and deadlineGrace). It returns the first part's
// error, or an error naming the parts still running at the deadline, which it logs at ERROR: those are
// abandoned, and Redis must then stay open under them until the process exits.
func (l *lifecycle) Wait() error {
	done := make(chan error, 1)
	go func() { done <- l.g.Wait() }()
	select {
	case err := <-done:
		l.cancelDrain(nil)
		return err
	case <-l.drain.Done():
	}
	// Parts that react to the deadline itself (the HTTP server cutting off its requests) get a moment to do so
	// and log what they cut off, which says more than "abandoned".
	select {
	case err := <-done:
		return err
	case <-time.After(deadlineGrace):
	}
	l.mu.Lock()
	var parts []string
	for name := range l.running {
		parts = append(parts, name)
	}
	slices.Sort(parts)
	for _, name := range parts {
		l.log.Error("shutdown: deadline passed; abandoned", "part", name, "timeout", l.timeout, "abandoned", cmp.Or(l.notes[name], "what it was doing"))
	}
	l.mu.Unlock()
	return fmt.Errorf("shutdown: %s still running %s after the stop: %w", strings.Join(parts, ", "), l.timeout, errDeadline)
}

// Since is how long ago the parts were told to stop.
func (l *lifecycle) Since() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping.IsZero() {
		return 0
	}
	return time.Since(l.stopping)
}
