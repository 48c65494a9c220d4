package rdb

import (
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
