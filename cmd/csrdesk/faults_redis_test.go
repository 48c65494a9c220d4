//go:build faults

package main

// Faults of the send queue's claims and of Redis's data: the mail server down for longer than the claim idle
// time, Redis at maxmemory, Redis restarted empty.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveHealth starts a csrdesk serve process (which runs a mail worker too) and returns its address once healthy.
func serveHealth(t *testing.T, p *procs) string {
	t.Helper()
	addr := freeAddr(t)
	p.serve(addr)
	return addr
}

// health returns /healthz's status and body.
func health(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// metric returns the value of a metric without labels on /metrics, or -1.
func metric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// mailServerDownLong: two workers, the mail server hanging up on everything for three times the claim idle time.
// Each worker waits with a batch in hand; a live worker keeps its claim, so neither takes over the other's.
func mailServerDownLong(t *testing.T, bin string) faultRow {
	const n, idle = 6000, 5 * time.Second
	r := newCampaignRig(t, bin, n, "CSRDESK_MAIL_RATE=500", "CSRDESK_MAIL_CLAIM_IDLE="+idle.String())
	rc, sink, id, p := r.rc, r.sink, r.id, r.p
	r.start(t)
	p.start(nil, "worker")
	p.start(nil, "worker")
	waitSent(t, rc, id, n/4)
	sink.HangUp(true)
	time.Sleep(3 * idle)
	sink.HangUp(false)
	recovery := nextMail(t, sink, "the server came back")
	waitFinished(t, rc, id, 3*time.Minute)
	lost, dups := checkDelivered(t, rc, sink, id, n, 0)
	return faultRow{fault: "mail server down 15 s = 3 x claim idle (2 workers)", affected: fmt.Sprintf("%d recipients at 500/s", n), lost: lost, dups: dups,
		bound: "0", recovery: "mail again " + secs(recovery) + " after the server"}
}

// redisFull: Redis at maxmemory (noeviction) for 12 s in the middle of a campaign, with claim idle 5 s. Health
// says 503 and why; nothing goes out while no recipient can be taken; nothing goes out twice after.
func redisFull(t *testing.T, bin string) faultRow {
	const n, idle = 6000, 5 * time.Second
	r := newCampaignRig(t, bin, n, "CSRDESK_MAIL_RATE=1000", "CSRDESK_MAIL_CLAIM_IDLE="+idle.String())
	rc, sink, id, p := r.rc, r.sink, r.id, r.p
	addr := serveHealth(t, p)
	r.start(t)
	p.start(nil, "worker")
	waitSent(t, rc, id, n/3)
	ctx := context.Background()
	t.Cleanup(func() { rc.ConfigSet(ctx, "maxmemory", "0") })
	rc.ConfigSet(ctx, "maxmemory", "1")
	full := time.Now()
	var code int
	var body string
	var seen time.Duration
	for time.Since(full) < 10*time.Second {
		if code, body = health(addr); code == 503 {
			seen = time.Since(full)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 503 || !strings.Contains(body, "refuses writes") {
		t.Errorf("/healthz of a full Redis: %d %q", code, body)
	}
	if v := metric(addr, "csrdesk_redis_writable"); v != 0 {
		t.Errorf("csrdesk_redis_writable = %v with Redis full", v)
	}
	_, during, _ := sink.Counts()
	time.Sleep(12*time.Second - time.Since(full))
	if _, after, _ := sink.Counts(); after-during > 0 {
		t.Logf("%d messages went out while Redis was full (taken before it filled)", after-during)
	}
	rc.ConfigSet(ctx, "maxmemory", "0")
	recovery := nextMail(t, sink, "Redis had room again")
	waitFinished(t, rc, id, 3*time.Minute)
	if code, body := health(addr); code != 200 {
		t.Errorf("/healthz after: %d %q", code, body)
	}
	lost, dups := checkDelivered(t, rc, sink, id, n, 0)
	return faultRow{fault: "Redis at maxmemory 12 s mid-campaign (claim idle 5 s)", affected: fmt.Sprintf("%d recipients, serve + worker", n), lost: lost, dups: dups,
		bound: "0", recovery: fmt.Sprintf("/healthz 503 %q after %s; mail again %s after", body, secs(seen), secs(recovery))}
}

// redisEmpty: Redis killed mid-campaign and restarted with no data, as without persistence or after a failover
// to an empty replica. Every process notices; no record of the vanished campaign is written into the empty
// database; the next campaign has a new id and counts exactly its own recipients.
func redisEmpty(t *testing.T, bin string) faultRow {
	const n = 5000
	r := newCampaignRig(t, bin, n, "CSRDESK_MAIL_RATE=500", "CSRDESK_MAIL_CLAIM_IDLE=5s")
	srv, rc, sink, id, p := r.server, r.rc, r.sink, r.id, r.p
	addr := serveHealth(t, p)
	r.start(t)
	p.start(nil, "worker")
	waitSent(t, rc, id, n/3)
	srv.Kill(os.Kill)
	if err := srv.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	var code int
	var body string
	for time.Since(back) < 20*time.Second {
		if code, body = health(addr); code == 503 && strings.Contains(body, "lost its data") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	detected := time.Since(back)
	if code != 503 || !strings.Contains(body, "lost its data") {
		t.Errorf("/healthz after Redis came back empty: %d %q", code, body)
	}
	time.Sleep(3 * time.Second) // the workers' in-flight outcomes, had they been written
	ctx := context.Background()
	var written []string
	for _, k := range []string{"meta", "delivery", "counts", "jobs", "sending", "failures"} {
		if rc.Exists(ctx, "csrdesk:{c"+id+"}:"+k).Val() == 1 {
			written = append(written, k)
		}
	}
	if len(written) > 0 {
		t.Errorf("records of the vanished campaign %s were written into the empty Redis: %v", id, written)
	}
	errors := 0
	for _, log := range p.logs {
		data, _ := os.ReadFile(log)
		if strings.Contains(string(data), "level=ERROR") && strings.Contains(string(data), "redis lost its data") {
			errors++
		}
	}
	if errors != len(p.logs) {
		t.Errorf("%d of %d processes logged the loss at ERROR", errors, len(p.logs))
	}
	// The next campaign, to one recipient fewer: a new id, its own counts, each of its recipients mailed once more.
	before := make([]int, n-1)
	for i := range before {
		before[i] = sink.Got(fmt.Sprintf("p%05d@example.com", i))
	}
	importPeople(t, r.e, n-1)
	next := createCampaign(t, r.e)
	if next == id || mustInt(next) <= mustInt(id) {
		t.Errorf("the campaign after the loss got id %s; the lost one was %s", next, id)
	}
	r.id = next
	r.start(t)
	waitFinished(t, rc, next, 2*time.Minute)
	st := counts(rc, next)
	if st["sent"] != n-1 || st["failed"] != 0 {
		t.Errorf("the next campaign, of %d recipients, counts %v", n-1, st)
	}
	lost, dups := 0, 0
	for i, b := range before {
		switch got := sink.Got(fmt.Sprintf("p%05d@example.com", i)) - b; {
		case got == 0:
			lost++
		case got > 1:
			dups += got - 1
		}
	}
	if lost > 0 || dups > 0 {
		t.Errorf("the next campaign: %d lost, %d sent twice", lost, dups)
	}
	return faultRow{fault: "Redis restarted empty mid-campaign", affected: fmt.Sprintf("%d recipients, serve + worker; then a campaign of %d", n, n-1), lost: lost, dups: dups,
		bound: "0 (next campaign)", recovery: fmt.Sprintf("noticed in %s (/healthz 503, ERROR in %d of %d logs), 0 records written into the empty Redis; next campaign id %s (was %s): %d sent of %d",
			secs(detected), errors, len(p.logs), next, id, st["sent"], n-1)}
}

func mustInt(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
