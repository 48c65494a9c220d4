// Package rdbtest starts a real redis-server for a test binary. Tests never talk to an imitation of Redis.
//
//	var redisSrv *rdbtest.Server
//
//	func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
)

// Server is a redis-server process with its own port and data folder.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	args []string
	dir  string
	next atomic.Int32 // the next database number handed out by Client
}

// MustStart starts a redis-server on a free port, or exits the test binary saying how to install one.
func MustStart() *Server {
	s, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdbtest:", err)
		os.Exit(2)
	}
	return s
}

// Main starts a redis-server for a test binary, points *srv at it, runs the tests and removes the server. It
// returns the exit code for os.Exit.
func Main(m *testing.M, srv **Server) int {
	*srv = MustStart()
	defer (*srv).Stop()
	return m.Run()
}

// Own starts a redis-server of one test's own, which it may fill, kill or restart without touching the others,
// and stops it when the test ends.
func Own(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// serverBin finds redis-server, or says how to install it.
func serverBin() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not found: install it with `sudo apt-get install -y redis-server` (or run make test as root)")
	}
	return bin, nil
}

// Start starts a redis-server on a free port with AOF on, in a temporary folder, and waits until it answers.
func Start() (*Server, error) {
	bin, err := serverBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "csrdesk-redis-")
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction", "--databases", "64",
			"--logfile", filepath.Join(dir, "redis.log")}
		s.cmd = exec.Command(bin, s.args...)
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		if s.wait(5 * time.Second) {
			return s, nil
		}
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not start; its log:\n%s", log)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) wait(limit time.Duration) bool {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Kill stops the server with sig, syscall.SIGTERM for a clean shutdown or syscall.SIGKILL for a crash, and
// waits until it has gone. Its data folder stays for Restart.
func (s *Server) Kill(sig os.Signal) error {
	if err := s.cmd.Process.Signal(sig); err != nil {
		return err
	}
	s.cmd.Wait()
	return nil
}

// Restart starts the server again on its port and data folder, as after a crash, and waits until it answers
// (it has then loaded its append-only file).
func (s *Server) Restart() error {
	s.cmd = exec.Command(s.cmd.Path, s.args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	if !s.wait(30 * time.Second) {
		return fmt.Errorf("redis-server did not come back on %s", s.Addr)
	}
	return nil
}

// Wipe removes the data files of a server that has been killed, so that Restart brings it back empty: Redis
// restarted without persistence, or failed over to a replica that had nothing.
func (s *Server) Wipe() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "redis.log" {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stop ends the server and removes its data folder.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// URL returns a redis:// URL for database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// DB returns a fresh database number for one test; tests that run in parallel get different ones. It is empty
// but for its id counters, set to 0 so that the first ticket and campaign are 1 (rdb.NextID starts a counter it
// does not find much higher).
func (s *Server) DB(tb testing.TB) int {
	tb.Helper()
	db := int(s.next.Add(1)) % 64
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: db})
	defer c.Close()
	ctx := context.Background()
	if err := c.FlushDB(ctx).Err(); err != nil {
		tb.Fatalf("flush redis db %d: %v", db, err)
	}
	if err := c.MSet(ctx, rdb.TicketsSeq, 0, rdb.CampaignsSeq, 0).Err(); err != nil {
		tb.Fatalf("redis db %d: %v", db, err)
	}
	return db
}

// Client returns a client on a fresh, empty database, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: s.DB(tb)})
	tb.Cleanup(func() { c.Close() })
	return c
}
