package rdb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
)

// A Cluster has database 0 only; go-redis's Cluster client would drop another number without a word.
func TestClusterURLDatabase(t *testing.T) {
	if _, err := rdb.ParseURL("redis://a:7000,b:7001/2"); err == nil {
		t.Error("ParseURL took database 2 of a Cluster")
	}
	if _, err := rdb.ParseURL("redis://s1:26379,s2:26379/2?master=mymaster"); err != nil {
		t.Errorf("ParseURL refused database 2 behind Sentinels: %v", err)
	}
}

// TestCluster opens csrdesk's connection to a real three-master Redis Cluster by its comma-separated URL, checks
// that Scan sees the keys of every master, that TxPipeline takes keys of several slots, and that a key survives
// its master's crash once the replica has taken over, a group of writes begun meanwhile included.
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
	c, err := rdb.Open(ctx, cl.URL())
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
	if err := rdb.Scan(ctx, c, "csrdesk:test:*", "string", func(ctx context.Context, c *redis.Client, key string) error { seen++; return nil }); err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Errorf("Scan saw %d keys of %d", seen, n)
	}

	// A group of writes to several slots: a MULTI/EXEC would be refused (CROSSSLOT); TxPipeline runs it in order.
	pipe := rdb.TxPipeline(c)
	first := pipe.Set(ctx, "csrdesk:test:a", "1", 0)
	missing := pipe.Get(ctx, "csrdesk:test:missing")
	pipe.Set(ctx, "csrdesk:test:b", "2", 0)
	if _, err := pipe.Exec(ctx); err != redis.Nil || first.Err() != nil || missing.Err() != redis.Nil {
		t.Errorf("TxPipeline across slots: %v (first %v, missing %v), want redis.Nil from the GET only", err, first.Err(), missing.Err())
	}
	if v := c.Get(ctx, "csrdesk:test:b").Val(); v != "2" {
		t.Errorf("after TxPipeline, csrdesk:test:b = %q, want 2", v)
	}

	const key = "csrdesk:test:0"
	master, err := cl.MasterOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	live := "" // a key of another master
	for i := 1; live == ""; i++ {
		if m, err := cl.MasterOf(ctx, fmt.Sprintf("csrdesk:test:%d", i)); err == nil && m != master {
			live = fmt.Sprintf("csrdesk:test:%d", i)
		}
	}
	if err := cl.KillMaster(master); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// A group that has written to a live master goes on to the lost one's key once its replica serves it, rather
	// than stop half-way.
	group := make(chan error, 1)
	go func() {
		pipe := rdb.TxPipeline(c)
		pipe.Set(ctx, live, "during", 0)
		pipe.Set(ctx, key, "during", 0)
		_, err := pipe.Exec(ctx)
		group <- err
	}()
	if _, err := cl.WaitFailover(ctx, key, master, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	// csrdesk's client must find the new master by itself, soon: go-redis's own default took up to a minute.
	for deadline := promoted.Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := c.Get(ctx, key).Err()
		if err == nil || err == redis.Nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s unreadable 10 s after the replica's promotion: %v", key, err)
		}
	}
	t.Logf("replica of %s promoted %s after the kill; csrdesk's client used it %s later", master.Addr,
		promoted.Sub(killed).Round(10*time.Millisecond), time.Since(promoted).Round(10*time.Millisecond))
	if err := <-group; err != nil {
		t.Errorf("a group begun before the failover: %v", err)
	}
	if v := c.Get(ctx, key).Val(); v != "during" {
		t.Errorf("%s = %q after the failover, want the group's value", key, v)
	}
}
