package bot

import (
	"context"
	"errors"
	"testing"
)

// Once runs an event's handling to completion once: a failed first try lets the next delivery run it, a delivery
// during a try is told to come back, and deliveries after a success do nothing.
func TestOnce(t *testing.T) {
	ctx := context.Background()
	rc := redisSrv.Client(t)
	runs := 0
	fail := func(context.Context) error { runs++; return errors.New("redis went away") }
	if err := Once(ctx, rc, "ev1", fail); err == nil || runs != 1 {
		t.Fatalf("failing first try: %v, %d runs", err, runs)
	}
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Once(ctx, rc, "ev1", func(context.Context) error { runs++; close(started); <-release; return nil })
	}()
	<-started
	if err := Once(ctx, rc, "ev1", fail); !errors.Is(err, ErrInProgress) {
		t.Errorf("a delivery during the try: %v, want ErrInProgress", err)
	}
	close(release)
	if err := <-done; err != nil || runs != 2 {
		t.Fatalf("second delivery: %v, %d runs", err, runs)
	}
	if err := Once(ctx, rc, "ev1", fail); err != nil || runs != 2 {
		t.Errorf("a delivery after the success: %v, %d runs", err, runs)
	}
}
