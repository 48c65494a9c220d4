package rdb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb/rdbtest"
)

// TestCluster opens csrdesk's connection to a real three-master Redis Cluster by its comma-separated URL, checks
// that Scan sees the keys of every master, and that a key survives its master's crash once the replica has taken
// over.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	cl, err := rdbtest.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	ctx := context.Background()
	c, err := Open(ctx, cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("Open(%s) gave a %T, want a Cluster client", cl.URL(), c)
	}
	const n = 100 // spread over the three masters' slots
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("csrdesk:test:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	if err := Scan(ctx, c, "csrdesk:test:*", "string", func(ctx context.Context, c *redis.Client, key string) error { seen++; return nil }); err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Errorf("Scan saw %d keys of %d", seen, n)
	}

	const key = "csrdesk:test:0"
	master, err := cl.MasterOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.KillMaster(master); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if _, err := cl.WaitFailover(ctx, key, master, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	// csrdesk's client must find the new master by itself, soon: go-redis's own default took up to a minute.
	for deadline := promoted.Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v, err := c.Get(ctx, key).Result()
		if err == nil {
			if v != "0" {
				t.Errorf("%s = %q after the failover, want 0", key, v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s unreadable 5 s after the replica's promotion: %v", key, err)
		}
	}
	t.Logf("replica of %s promoted %s after the kill; csrdesk's client used it %s later", master.Addr,
		promoted.Sub(killed).Round(10*time.Millisecond), time.Since(promoted).Round(10*time.Millisecond))
}
