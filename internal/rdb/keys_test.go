package rdb_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
)

// TestKeyspace fails when two declared patterns can name the same key: two features would then share it, as the
// ticket event stream and the calendar once shared "csrdesk:events".
func TestKeyspace(t *testing.T) {
	for i, a := range rdb.Keyspace {
		if !strings.HasPrefix(a.Pattern, "csrdesk:") && !strings.HasPrefix(a.Pattern, "rate:csrdesk:") {
			t.Errorf("%s is outside csrdesk's prefix", a.Pattern)
		}
		for _, b := range rdb.Keyspace[i+1:] {
			if rdbtest.Overlap(a.Pattern, b.Pattern) {
				t.Errorf("%s (%s, %s) and %s (%s, %s) can name the same key", a.Pattern, a.Type, a.Owner, b.Pattern, b.Type, b.Owner)
			}
		}
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"csrdesk:events", "csrdesk:events", true},
		{"csrdesk:events", "csrdesk:tickets:events", false},
		{"csrdesk:web:<hex>", "csrdesk:web:0af", true},
		{"csrdesk:web:<hex>", "csrdesk:web:x", false},
		{"csrdesk:web:<hex>", "csrdesk:web:", false},
		{"csrdesk:ticket:<n>", "csrdesk:ticket:<n>:log", false},
		{"csrdesk:ticket:<s>", "csrdesk:ticket:<n>:log", true},
		{"csrdesk:conv:<s>:<s>", "csrdesk:conv:web", false},
		{"csrdesk:conv:<s>:<s>", "csrdesk:conv:a:b:c", true},
		{"csrdesk:{subs}:list:<s>", "csrdesk:{subs}:lists", false},
		{"csrdesk:{c<n>}:cursor", "csrdesk:{c<n>}:cursor:lock", false},
		{"a<s>", "<s>b", true},
		{"a<n>", "<hex>b", false},
	}
	for _, tt := range tests {
		if got := rdbtest.Overlap(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := rdbtest.Overlap(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// TestMigrate: a deployment of the version that kept its ticket events under the calendar's name gets them moved,
// consumer groups and all, and its calendar (a hash under that name) is left alone.
func TestMigrate(t *testing.T) {
	srv := rdbtest.Own(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 1})
	defer c.Close()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "csrdesk:events", Values: []any{"ticket", "1", "kind", "opened"}})
	c.XGroupCreate(ctx, "csrdesk:events", "slack-console", "0")
	log, buf := logBuffer()
	if _, err := rdb.Join(ctx, c, log); err != nil {
		t.Fatal(err)
	}
	if n := c.XLen(ctx, rdb.TicketEvents).Val(); n != 1 {
		t.Errorf("%s holds %d entries after the migration, want 1", rdb.TicketEvents, n)
	}
	if g := c.XInfoGroups(ctx, rdb.TicketEvents).Val(); len(g) != 1 || g[0].Name != "slack-console" {
		t.Errorf("the consumer groups moved: %+v", g)
	}
	if c.Exists(ctx, "csrdesk:events").Val() != 0 {
		t.Error("the old stream is still there")
	}
	if got := strings.Count(buf.String(), "renamed a key"); got != 1 {
		t.Errorf("the rename was logged %d times, want once:\n%s", got, buf)
	}
	// A second start finds nothing to move and says nothing; a calendar under the old name stays.
	c.HSet(ctx, rdb.CalendarEvents, "ev1", "{}")
	buf.Reset()
	if _, err := rdb.Join(ctx, c, log); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 || c.HLen(ctx, rdb.CalendarEvents).Val() != 1 {
		t.Errorf("second start: log %q, calendar %d events", buf, c.HLen(ctx, rdb.CalendarEvents).Val())
	}
}

// TestDatasetLost: a process notices that Redis lost the data it knew, says so at ERROR and in its health, and
// works on the new data set; the id counters do not start at 1 again.
func TestDatasetLost(t *testing.T) {
	srv := rdbtest.Own(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 2})
	defer c.Close()
	log, buf := logBuffer()
	d, err := rdb.Join(ctx, c, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Health(ctx, "test"); err != nil {
		t.Fatalf("healthy data set: %v", err)
	}
	first, err := rdb.NextID(ctx, c, rdb.CampaignsSeq)
	if err != nil || first < 1_000_000 {
		t.Fatalf("the first id of a data set is %d (%v), want the seconds since 2026", first, err)
	}
	if next, _ := rdb.NextID(ctx, c, rdb.CampaignsSeq); next != first+1 {
		t.Errorf("the next id is %d, want %d", next, first+1)
	}

	c.FlushDB(ctx)
	err = d.Health(ctx, "test")
	if !errors.Is(err, rdb.ErrDataLost) {
		t.Fatalf("health after the flush: %v, want %v", err, rdb.ErrDataLost)
	}
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "redis lost its data") {
		t.Errorf("no ERROR about the loss:\n%s", buf)
	}
	if c.Exists(ctx, rdb.Marker).Val() != 1 {
		t.Error("no marker for the new data set")
	}
	if again, _ := rdb.NextID(ctx, c, rdb.CampaignsSeq); again < first {
		t.Errorf("after the loss the counter gave %d, below %d of the data set lost", again, first)
	}
	// The loss stays in the health check of this process; a new process starts on the new data set, healthy.
	if err := d.Health(ctx, "test"); !errors.Is(err, rdb.ErrDataLost) {
		t.Errorf("health a moment later: %v", err)
	}
	d2, err := rdb.Join(ctx, c, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Health(ctx, "test"); err != nil {
		t.Errorf("a new process: %v", err)
	}
}

// TestHealthFull: a Redis at maxmemory answers PING but refuses writes; health says so.
func TestHealthFull(t *testing.T) {
	srv := rdbtest.Own(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 3})
	defer c.Close()
	log, _ := logBuffer()
	d, err := rdb.Join(ctx, c, log)
	if err != nil {
		t.Fatal(err)
	}
	c.ConfigSet(ctx, "maxmemory", "1")
	defer c.ConfigSet(ctx, "maxmemory", "0")
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("a full Redis stops answering PING: %v", err)
	}
	err = d.Health(ctx, "test")
	if err == nil || !strings.Contains(err.Error(), "refuses writes") || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("health of a full Redis: %v, want it to say it refuses writes (OOM)", err)
	}
}
