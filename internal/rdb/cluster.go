package rdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterReload is how old a Cluster client's map of slots to masters may get before the next command reloads
// it (CLUSTER SLOTS from one node, in the background).
//
// go-redis reloads the map at once on a MOVED or ASK redirect, but a master that crashed sends no redirect: its
// connections are refused, and go-redis (v9.23) keeps sending that master's slots to the dead address until the
// map is older than ClusterStateReloadInterval, 60 s by default. Measured on a local cluster (internal/rdb
// TestCluster, cmd/csrdesk's cluster run): the replica was promoted in about 3 s, and csrdesk still failed
// every command of the dead master's slots for the remaining minute. One CLUSTER SLOTS a second per process is
// cheap; csrdesk is then back about a second after the promotion.
const clusterReload = time.Second

// newClient makes the client for opts: a Cluster client (several hosts, no Sentinel master name) that reloads
// its slot map every clusterReload, or whatever redis.NewUniversalClient makes.
func newClient(opts *redis.UniversalOptions) redis.UniversalClient {
	if opts.MasterName == "" && len(opts.Addrs) > 1 {
		co := opts.Cluster()
		co.ClusterStateReloadInterval = clusterReload
		return redis.NewClusterClient(co)
	}
	return redis.NewUniversalClient(opts)
}

// TxPipeline returns c.TxPipeline() (MULTI/EXEC) on one server; on a Cluster, a pipeline whose Exec runs the
// commands one after the other, in order, and stops at the first that fails (a redis.Nil reply does not stop
// it; Exec returns the first error, redis.Nil included, as go-redis's pipelines do). Once one command is
// applied, a later one that fails while a master is lost is tried again, for up to finishWithin.
//
// Why: a Cluster runs a MULTI/EXEC only when all its keys are in one slot (go-redis refuses the rest with
// CROSSSLOT), and the ticket writes group keys of several slots: the ticket, its log, the event stream that
// staff faces follow, the open and all sets. Giving them one hash tag would rename every stored ticket key (a
// migration) and put all tickets in one slot. What it costs: on a Cluster the group is no longer all or
// nothing; a failure part-way that outlasts finishWithin (or a crash of the process) leaves the commands before
// it done and returns the error. That is safe for csrdesk's groups, which are ordered for it: the data first
// (the ticket hash, the log entry), then the event stream entry and the Pub/Sub notice announcing it, so
// nothing is announced that is not written; every reader of a ticket already treats a missing one as not found. Order is why this is not c.Pipeline(): a Cluster pipeline sends
// each node's share at once, in parallel, and a notice could overtake the entry it announces.
func TxPipeline(c redis.UniversalClient) redis.Pipeliner {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return &inOrder{Pipeliner: cc.Pipeline(), c: cc}
	}
	return c.TxPipeline()
}

// inOrder queues commands in the embedded Pipeline (never executed itself) and runs them one by one on Exec.
type inOrder struct {
	redis.Pipeliner
	c *redis.ClusterClient
}

// finishWithin is how long a group that has begun to write keeps trying a command that fails for a reason that
// passes (a master lost, the cluster down until its replica takes over): longer than a failover with Redis's
// default cluster-node-timeout of 15 s. Finishing matters more than answering fast: a group stopped part-way
// and tried again by its caller writes its first commands twice (measured: a staff reply whose log entry was
// written and whose event was not, retried by staff, showed twice in the ticket).
const finishWithin = 30 * time.Second

func (p *inOrder) Exec(ctx context.Context) ([]redis.Cmder, error) {
	cmds := p.Cmds()
	if len(cmds) == 0 {
		return nil, nil
	}
	cmds = append([]redis.Cmder(nil), cmds...)
	p.Discard()
	var first, failed error
	var deadline time.Time // set once a command has been applied
	for _, cmd := range cmds {
		if failed != nil {
			cmd.SetErr(fmt.Errorf("not run, an earlier command failed: %w", failed))
			continue
		}
		err := p.c.Process(ctx, cmd)
		if err != nil && !deadline.IsZero() {
			err = retryTransient(ctx, deadline, err, func() error { cmd.SetErr(nil); return p.c.Process(ctx, cmd) })
			if err != nil && ctx.Err() != nil {
				return cmds, ctx.Err()
			}
		}
		if err == nil || errors.Is(err, redis.Nil) {
			if deadline.IsZero() {
				deadline = time.Now().Add(finishWithin)
			}
		}
		if err != nil && first == nil {
			first = err
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			failed = err
		}
	}
	return cmds, first
}

// transient reports whether err is one that passes by itself: the connection (a master gone), or the cluster
// saying it is down or mid-failover.
func transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var re redis.Error // the server's reply, perhaps wrapped by the caller
	if !errors.As(err, &re) {
		return false
	}
	for _, prefix := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING"} {
		if strings.HasPrefix(re.Error(), prefix) {
			return true
		}
	}
	return false
}

// Finish runs fn, the step that completes something already recorded, and runs it again while it fails for a
// reason that passes (transient), for up to finishWithin. For a step whose failure would make the caller do
// the recorded part again: staff told "that did not work" after their reply was written reply again, and the
// ticket shows it twice (measured on a Cluster, where one master can be lost while the others answer).
func Finish(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(finishWithin)
	return retryTransient(ctx, deadline, fn(), fn)
}

// retryTransient runs fn again while err, its last result, is transient, until deadline or ctx is done, waiting
// 100 ms, then twice as long each time up to a second; it returns the last error.
func retryTransient(ctx context.Context, deadline time.Time, err error, fn func() error) error {
	for wait := 100 * time.Millisecond; err != nil && transient(err) && time.Now().Before(deadline); wait = min(2*wait, time.Second) {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		err = fn()
	}
	return err
}
