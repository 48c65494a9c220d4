package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// procs starts csrdesk processes from the built binary with a common environment, logging to files kept for a
// failing test. Each is stopped with SIGTERM when the test ends.
type procs struct {
	t    *testing.T
	bin  string
	env  []string
	n    int
	logs []string // the log file of each process started, in order
}

func (p *procs) start(extra []string, args ...string) *exec.Cmd {
	p.t.Helper()
	p.n++
	log, err := os.Create(filepath.Join(p.t.TempDir(), fmt.Sprintf("%s-%d.log", args[0], p.n)))
	if err != nil {
		p.t.Fatal(err)
	}
	p.logs = append(p.logs, log.Name())
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(append(append(os.Environ(), "CSRDESK_SECRET=faults", "CSRDESK_LOG_LEVEL=warn"), p.env...), extra...)
	cmd.Stdout, cmd.Stderr = io.Discard, log
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		log.Close()
		if p.t.Failed() {
			data, _ := os.ReadFile(log.Name())
			p.t.Logf("%s log:\n%s", filepath.Base(log.Name()), logTail(string(data), 3000))
		}
	})
	return cmd
}

// serve starts csrdesk serve listening on addr and waits until it is healthy.
func (p *procs) serve(addr string, extra ...string) {
	p.t.Helper()
	p.start(append([]string{"CSRDESK_HTTP_ADDR=" + addr}, extra...), "serve")
	log := p.logs[len(p.logs)-1]
	waitHealthy(p.t, addr, func() string { data, _ := os.ReadFile(log); return string(data) })
}

// waitHealthy waits up to 20 s until the csrdesk at addr answers /healthz with 200, or fails the test with the
// end of what log returns.
func waitHealthy(t testing.TB, addr string, log func() string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("csrdesk at %s did not come up (%v):\n%s", addr, err, logTail(log(), 6000))
		}
	}
}

func logTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
