package rdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A data set is what one Redis holds for csrdesk. Redis can lose it without telling anyone: a restart without
// persistence, a failover to a replica that had not caught up, a FLUSHALL. A process that went on as if nothing
// had happened would write the outcomes it holds into the empty database, as records of campaigns that no longer
// exist. The marker makes the loss visible: the first process to find no marker writes one, every process
// remembers the marker it found and looks again every few seconds and in every health check. One that finds
// another marker, or none, says so at ERROR level and in /healthz until it is restarted, and joins the new data
// set, so that it goes on working without mixing the two.
//
// What else guards the data: every script that records an outcome checks that its campaign still exists, and
// ids come from NextID, which never starts a counter at 1 again.

// ErrDataLost is the health check's error once the data set a process knew is gone.
var ErrDataLost = errors.New("redis lost its data")

// Dataset is the data set a process works on.
type Dataset struct {
	rc  redis.UniversalClient
	log *slog.Logger

	mu   sync.Mutex
	id   string // the marker this process works under
	lost string // what happened to the data set it started with; empty while nothing did
}

// Join moves keys stored under an old name (see renamed), then reads the data set's marker, writing a new one
// when there is none.
func Join(ctx context.Context, rc redis.UniversalClient, log *slog.Logger) (*Dataset, error) {
	if err := migrate(ctx, rc, log); err != nil {
		return nil, err
	}
	d := &Dataset{rc: rc, log: log}
	id, _, err := d.marker(ctx)
	if err != nil {
		return nil, err
	}
	d.id = id
	return d, nil
}

// marker returns the data set's marker, writing a new one when there is none; created says it did.
func (d *Dataset) marker(ctx context.Context) (id string, created bool, err error) {
	var b [8]byte
	rand.Read(b[:])
	mine := hex.EncodeToString(b[:]) + " " + time.Now().UTC().Format(time.RFC3339)
	created, err = d.rc.SetNX(ctx, Marker, mine, 0).Result()
	if err != nil {
		return "", false, fmt.Errorf("redis data set marker: %w", err)
	}
	if created {
		return mine, true, nil
	}
	id, err = d.rc.Get(ctx, Marker).Result()
	if errors.Is(err, redis.Nil) { // deleted between the two calls: try again
		return d.marker(ctx)
	}
	if err != nil {
		return "", false, fmt.Errorf("redis data set marker: %w", err)
	}
	return id, false, nil
}

// Check looks whether Redis still holds the data set this process works on. When it does not, it logs the loss
// at ERROR level, remembers it for Health, and goes on with the data set Redis holds now.
func (d *Dataset) Check(ctx context.Context) error {
	now, err := d.rc.Get(ctx, Marker).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis data set marker: %w", err)
	}
	d.mu.Lock()
	known := d.id
	d.mu.Unlock()
	if now == known {
		return nil
	}
	id, _, err := d.marker(ctx)
	if err != nil {
		return err
	}
	what := "the data set this process knew (" + known + ") is gone: Redis restarted empty, failed over to a replica without it, or was flushed"
	if now != "" {
		what = "the data set this process knew (" + known + ") was replaced by another (" + now + ")"
	}
	d.mu.Lock()
	d.id = id
	if d.lost == "" {
		d.lost = time.Now().UTC().Format(time.RFC3339) + ": " + what
	}
	d.mu.Unlock()
	d.log.Error("redis lost its data; working on the new data set from now on, restart the process once you have looked",
		"known", known, "now", id, "detail", what)
	return nil
}

// Watch checks the data set every interval until ctx is done.
func (d *Dataset) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.Check(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("redis data set check", "err", err)
			}
		}
	}
}

// Lost says what happened to the data set the process started with; empty while nothing did.
func (d *Dataset) Lost() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}

// Health checks that Redis answers, takes writes (a Redis at maxmemory refuses them but answers PING), and still
// holds the data set this process knew. A nil error means healthy.
func (d *Dataset) Health(ctx context.Context, who string) error {
	if err := d.rc.Set(ctx, Health, who, time.Minute).Err(); err != nil {
		if strings.HasPrefix(err.Error(), "OOM") || strings.Contains(err.Error(), "READONLY") {
			return fmt.Errorf("redis refuses writes: %w", err)
		}
		return fmt.Errorf("redis unreachable: %w", err)
	}
	if err := d.Check(ctx); err != nil {
		return err
	}
	if lost := d.Lost(); lost != "" {
		return fmt.Errorf("%w: %s", ErrDataLost, lost)
	}
	return nil
}

// nextIDScript increments a counter; a counter that is not there starts at ARGV[1] rather than at 1.
var nextIDScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return redis.call('INCR', KEYS[1])`)

// idEpoch is when the id counters' time starts.
var idEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// NextID returns the next id of counter key. A counter Redis does not have starts at the seconds since 2026
// instead of 1 (a test that wants 1 sets the counter to 0): after a loss of data, ids keep growing past those of the data set lost (as long as it handed out
// fewer ids than the seconds it lived), so no mail, link or record that still carries an old id meets a new
// campaign or ticket of the same id.
func NextID(ctx context.Context, rc redis.UniversalClient, key string) (int64, error) {
	return nextIDScript.Run(ctx, rc, []string{key}, max(1, int64(time.Since(idEpoch)/time.Second))).Int64()
}

// migrate moves keys found under an old name with the old type to their new name. RENAME is atomic but cannot
// cross Cluster slots; there DUMP, RESTORE and DEL do it, and a second process doing the same finds the new name
// taken and the old one gone.
func migrate(ctx context.Context, rc redis.UniversalClient, log *slog.Logger) error {
	for _, r := range renamed {
		typ, err := rc.Type(ctx, r.old).Result()
		if err != nil {
			return fmt.Errorf("migrate %s: %w", r.old, err)
		}
		if typ != r.typ {
			continue
		}
		err = rc.RenameNX(ctx, r.old, r.new).Err()
		if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
			err = moveAcrossSlots(ctx, rc, r.old, r.new)
		}
		if err != nil {
			return fmt.Errorf("migrate %s to %s: %w", r.old, r.new, err)
		}
		if n, _ := rc.Exists(ctx, r.old).Result(); n == 1 {
			if typ, _ := rc.Type(ctx, r.old).Result(); typ == r.typ {
				log.Error("migrate: both the old and the new key exist; the old one is left for you to look at", "old", r.old, "new", r.new)
				continue
			}
		}
		log.Warn("migrate: renamed a key of an earlier version", "old", r.old, "new", r.new, "type", r.typ)
	}
	return nil
}

func moveAcrossSlots(ctx context.Context, rc redis.UniversalClient, from, to string) error {
	dump, err := rc.Dump(ctx, from).Result()
	if errors.Is(err, redis.Nil) {
		return nil // moved by another process
	}
	if err != nil {
		return err
	}
	if err := rc.Restore(ctx, to, 0, dump).Err(); err != nil {
		if strings.Contains(err.Error(), "BUSYKEY") {
			return nil // there already: left to the check after
		}
		return err
	}
	return rc.Del(ctx, from).Err()
}
