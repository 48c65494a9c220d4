package rdbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real local Redis Cluster: three masters and a replica of each, every one a redis-server of its own
// (port, folder, AOF on, noeviction), made a cluster by `redis-cli --cluster create`. Tests kill a master with
// KillMaster and wait for its replica to take over with WaitFailover, as in production.
//
// The node timeout is short (NodeTimeout), so that a killed master's replica is promoted within seconds rather
// than the 15 s default; cluster-require-full-coverage stays on (the default), so while a master is down and
// not yet replaced, the whole cluster refuses commands (CLUSTERDOWN), as a production cluster does.
type Cluster struct {
	Nodes []*Server // masters first as created; roles change on a failover
	dir   string
	live  map[string]bool // by address
}

// NodeTimeout is the cluster-node-timeout of the nodes: how long a master may be unreachable before its
// replica is elected in its place (plus an election of about a second).
const NodeTimeout = 1500 * time.Millisecond

// StartCluster starts the six nodes, creates the cluster and waits until every node reports cluster_state:ok
// and every replica has synchronised with its master.
func StartCluster() (*Cluster, error) {
	bin, err := serverBin()
	if err != nil {
		return nil, err
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		// Debian's redis-server depends on redis-tools, which has redis-cli; a redis-server built by hand may not.
		return nil, errors.New("redis-cli not found (it creates the cluster): install it with `sudo apt-get install -y redis-tools`")
	}
	dir, err := os.MkdirTemp("", "csrdesk-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, live: map[string]bool{}}
	for i := range 6 {
		s, err := c.startNode(bin, filepath.Join(dir, "node"+strconv.Itoa(i)))
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitOK(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// startNode starts one cluster node in its own folder. The cluster bus listens on the port + 10000, so both
// must be free.
func (c *Cluster) startNode(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 10; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if port+10000 > 65535 || !portFree(port+10000) {
			continue
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds())),
			// A replica that lost its master a while ago may still be promoted: a test decides when to kill.
			"--cluster-replica-validity-factor", "0",
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
			"--logfile", filepath.Join(dir, "redis.log")}
		s.cmd = exec.Command(bin, s.args...)
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		if s.wait(5 * time.Second) {
			c.live[s.Addr] = true
			return s, nil
		}
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("cluster node did not start; its log:\n%s", log)
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// URL returns the redis:// URL csrdesk takes for a Cluster: the three nodes created as masters, comma-separated
// (go-redis learns the rest of the cluster from any of them).
func (c *Cluster) URL() string {
	var hosts []string
	for _, s := range c.Nodes[:3] {
		hosts = append(hosts, s.Addr)
	}
	return "redis://" + strings.Join(hosts, ",") + "/0"
}

// Client returns a Cluster client for the test's own reads; the caller closes it. Like csrdesk's (see
// internal/rdb), it reloads its slot map every second: with go-redis's default of 60 s it would go on asking a
// killed master for a minute.
func (c *Cluster) Client() *redis.ClusterClient {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr)
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ClusterStateReloadInterval: time.Second})
}

func (c *Cluster) node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// admin runs fn with a plain client on a live node.
func (c *Cluster) admin(ctx context.Context, fn func(*redis.Client) error) error {
	err := errors.New("no live node")
	for _, s := range c.Nodes {
		if !c.live[s.Addr] {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		err = fn(rc)
		rc.Close()
		if err == nil {
			return nil
		}
	}
	return err
}

// clusterNode is a line of CLUSTER NODES.
type clusterNode struct {
	id, addr, flags, master string
	slots                   [][2]int
}

func (n clusterNode) has(flag string) bool { return strings.Contains(","+n.flags+",", ","+flag+",") }

func parseNodes(text string) []clusterNode {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, flags: f[2], master: f[3]}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, found := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if found {
				b, _ = strconv.Atoi(hi)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out
}

// MasterOf returns the node that serves key now.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*Server, error) {
	var master *Server
	err := c.admin(ctx, func(rc *redis.Client) error {
		slot, err := rc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return err
		}
		text, err := rc.ClusterNodes(ctx).Result()
		if err != nil {
			return err
		}
		for _, n := range parseNodes(text) {
			if !n.has("master") || n.has("fail") || n.has("fail?") {
				continue
			}
			for _, r := range n.slots {
				if int(slot) >= r[0] && int(slot) <= r[1] {
					master = c.node(n.addr)
					return nil
				}
			}
		}
		return fmt.Errorf("no master serves slot %d", slot)
	})
	return master, err
}

// KillMaster kills a node with SIGKILL, as a crash or a lost machine would: whatever it had acknowledged but
// not yet sent to its replica is gone with it.
func (c *Cluster) KillMaster(s *Server) error {
	if err := s.Kill(syscall.SIGKILL); err != nil {
		return err
	}
	c.live[s.Addr] = false
	return nil
}

// WaitFailover waits until another node serves key in place of the dead one and every live node reports
// cluster_state:ok again; it returns the new master.
func (c *Cluster) WaitFailover(ctx context.Context, key string, dead *Server, limit time.Duration) (*Server, error) {
	deadline := time.Now().Add(limit)
	for {
		m, err := c.MasterOf(ctx, key)
		if err == nil && m != nil && m != dead && c.allOK(ctx) {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no replica took over %s within %s (last: %v)", dead.Addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allOK reports whether every live node says cluster_state:ok and, for a replica, that its link to its master
// is up (it has its data).
func (c *Cluster) allOK(ctx context.Context) bool {
	for _, s := range c.Nodes {
		if !c.live[s.Addr] {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		info, err := rc.ClusterInfo(ctx).Result()
		repl := ""
		if err == nil {
			repl, err = rc.Info(ctx, "replication").Result()
		}
		rc.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return false
		}
	}
	return true
}

// WaitOK waits until every live node reports cluster_state:ok and every replica is in sync with its master.
func (c *Cluster) WaitOK(limit time.Duration) error {
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	for !c.allOK(ctx) || c.replicas(ctx) < 3 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster is not ok after %s; logs in %s", limit, c.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// replicas counts the live replicas every node knows of.
func (c *Cluster) replicas(ctx context.Context) int {
	n := 0
	c.admin(ctx, func(rc *redis.Client) error {
		text, err := rc.ClusterNodes(ctx).Result()
		for _, node := range parseNodes(text) {
			if node.has("slave") && !node.has("fail") {
				n++
			}
		}
		return err
	})
	return n
}

// Stop kills every node and removes their folders.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		if c.live[s.Addr] {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	}
	os.RemoveAll(c.dir)
}
