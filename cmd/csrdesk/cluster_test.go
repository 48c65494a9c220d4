package main

// The distributed setup, proved: the real csrdesk binary (serve, which also mails, and a worker) on a real local
// Redis Cluster of three masters and their replicas (rdbtest.StartCluster), doing a bit of everything while the
// master holding the campaign's slot is killed (SIGKILL) and its replica promoted. TestClusterSmoke runs it small
// in `make test`; the fault suite (`make faults`) runs it bigger and reports lost and doubled mail.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
	"csrdesk/internal/rdb/rdbtest"
	"csrdesk/internal/smtptest"
)

// clusterFigures is what a cluster run measured.
type clusterFigures struct {
	recipients, lost, dups int
	failover               time.Duration // from the kill until the replica served the slot and the cluster was ok
	served                 time.Duration // from the kill until csrdesk had taken all that people tried meanwhile
	refused                int           // tries of those refused while the master was down (each tried again)
	killedHeld             []string      // what else of the run lived on the killed master
}

// clusterRun runs the product on a fresh cluster: n subscribers imported and a campaign to them; a web chat
// handed over to staff (a ticket), claimed on the staff pages; a calendar event; a public subscription from the
// web chat; the ticket's card in Slack. Once a third of the campaign is sent, the master of the campaign's slot is killed. While the
// cluster is without it, staff reply, the subscriber confirms and a second event is created, each tried again
// until csrdesk takes it, as a person would. Then everything must be there: each recipient mailed (duplicates
// counted), the ticket with its reply, the reply in the web chat and once in Slack, both events, the
// subscription confirmed.
func clusterRun(t *testing.T, bin string, n, rate int) clusterFigures {
	t.Helper()
	cl, err := rdbtest.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	began := time.Now()
	phase := func(what string) { t.Logf("%6.1f s  %s", time.Since(began).Seconds(), what) }
	rc := cl.Client()
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	sink := smtptest.New(t)
	addr := freeAddr(t)
	base := "http://" + addr
	const staffToken = "cluster-staff-token"
	// A live worker keeps trying to record what it sent, and keeps its claims, however long the failover takes
	// (about 3 s, then up to a second until csrdesk's client reloads its slot map). When it gave up after half the
	// claim idle time, 5 s here made 7 to 13 of 5,000 go twice.
	common := []string{"CSRDESK_REDIS_URL=" + cl.URL(), "CSRDESK_SMTP_URL=smtp://" + sink.Addr + "?tls=none",
		fmt.Sprintf("CSRDESK_MAIL_RATE=%d", rate), "CSRDESK_MAIL_CLAIM_IDLE=5s", "CSRDESK_PUBLIC_URL=" + base}
	e := func(k string) string {
		if k == "CSRDESK_SECRET" {
			return "cluster"
		}
		for _, kv := range common {
			if name, v, _ := strings.Cut(kv, "="); name == k {
				return v
			}
		}
		return ""
	}
	phase("cluster up")
	importPeople(t, e, n)
	id := createCampaign(t, e)
	phase("subscribers imported")
	if _, _, err := runCmd(t, e, "lists", "create", "news", "--public"); err != nil {
		t.Fatal(err)
	}

	// cli runs a csrdesk command, as staff would on a machine of the deployment.
	cli := func(args ...string) ([]byte, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(append(os.Environ(), "CSRDESK_SECRET=cluster"), common...)
		return cmd.CombinedOutput()
	}
	p := &procs{t: t, bin: bin, env: append([]string{"CSRDESK_SECRET=cluster"}, common...)}
	// Slack as the second staff face: its console follows the ticket event stream and posts a card per ticket.
	pl := &platforms{}
	fake := httptest.NewServer(pl)
	t.Cleanup(fake.Close)
	p.serve(addr, "CSRDESK_OFFICE_HOURS=always", "CSRDESK_RATE_PER_MIN=0", "CSRDESK_STAFF_TOKEN="+staffToken,
		"SLACK_BOT_TOKEN=xoxb-1", "SLACK_SIGNING_SECRET=cluster-slack", "SLACK_API_URL="+fake.URL+"/slack/api/", "SLACK_STAFF_CHANNEL=CSTAFF")
	p.start(nil, "worker")

	phase("serve up")
	// A web chat, followed as its page does (server-sent events, reconnecting with Last-Event-ID).
	chat := followChat(t, base)
	chat.say(t, "what is the VSME standard?")
	chat.say(t, "/human")
	staff := clusterStaffLogin(t, base, staffToken)
	// The ticket's number, from the staff inbox: ids need not start at 1.
	var ticket string
	for deadline := time.Now().Add(20 * time.Second); ticket == ""; time.Sleep(100 * time.Millisecond) {
		if m := regexp.MustCompile(`href="/staff/tickets/(\d+)"`).FindStringSubmatch(staff.body(t, "/staff")); m != nil {
			ticket = m[1]
		}
		if ticket == "" && time.Now().After(deadline) {
			t.Fatalf("no ticket from the web chat's handover; the chat shows:\n%s", strings.Join(chat.seen(), "\n"))
		}
	}
	if code, loc := staff.post(t, "/staff/tickets/"+ticket+"/claim", nil); code != 303 || strings.Contains(loc, "error=") {
		t.Fatalf("claim: %d %s", code, loc)
	}
	// A calendar event after a ticket (the two once shared a key).
	if out, err := cli("events", "create", "--title", "CSR day before", "--start", "2027-09-13 09:00", "--end", "2027-09-13 17:00", "--tz", "Europe/Berlin"); err != nil {
		t.Fatalf("events create: %v\n%s", err, out)
	}
	const reader = "lea@example.fr"
	other := followChat(t, base) // the first chat's messages go to its ticket now
	other.say(t, "/subscribe")
	other.say(t, reader)
	var confirm string
	for deadline := time.Now().Add(20 * time.Second); confirm == ""; time.Sleep(50 * time.Millisecond) {
		m := regexp.MustCompile(`/confirm/([A-Za-z0-9_.-]+)`).FindStringSubmatch(strings.ReplaceAll(sink.Message(reader), "=\r\n", ""))
		if m != nil {
			confirm = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatal("no confirmation mail for the subscription from the web chat")
		}
	}

	phase("ticket, event, subscription")
	if _, _, err := runCmd(t, e, "campaign", "start", id); err != nil {
		t.Fatal(err)
	}
	jobs := rdb.CampaignKey(id, "jobs")
	for deadline := time.Now().Add(2 * time.Minute); clusterSent(rc, id) < n/3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the campaign did not get to %d sent: %d", n/3, clusterSent(rc, id))
		}
	}
	master, err := cl.MasterOf(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	var f clusterFigures
	f.recipients = n
	for what, key := range map[string]string{"ticket": rdb.TicketPrefix + ticket, "ticket events": rdb.TicketEvents, "subscribers": rdb.SubsPrefix + "all",
		"web chat": rdb.WebChatPrefix + chat.id, "calendar": rdb.CalendarEvents} {
		if m, err := cl.MasterOf(ctx, key); err == nil && m == master {
			f.killedHeld = append(f.killedHeld, what)
		}
	}
	slices.Sort(f.killedHeld)
	if err := cl.KillMaster(master); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	phase("master killed")

	// While the master is gone: what people do, each tried again until csrdesk takes it.
	const reply = "Hi, Bea here: VSME is the voluntary standard for SMEs."
	var mu sync.Mutex
	var wg sync.WaitGroup
	retry := func(what string, try func() bool) {
		wg.Go(func() {
			for deadline := time.Now().Add(time.Minute); !try(); time.Sleep(200 * time.Millisecond) {
				mu.Lock()
				f.refused++
				mu.Unlock()
				if time.Now().After(deadline) {
					t.Errorf("%s: refused for a minute after the kill", what)
					return
				}
			}
			mu.Lock()
			f.served = max(f.served, time.Since(killed))
			mu.Unlock()
		})
	}
	retry("staff reply", func() bool {
		code, loc := staff.post(t, "/staff/tickets/"+ticket+"/reply", url.Values{"text": {reply}})
		return code == 303 && !strings.Contains(loc, "error=")
	})
	retry("confirmation", func() bool {
		req, _ := http.NewRequest("POST", base+"/confirm/"+confirm, strings.NewReader("csrf="+clusterCSRF))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "csrdesk_pcsrf", Value: clusterCSRF})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	retry("events create", func() bool {
		_, err := cli("events", "create", "--title", "CSR day during", "--start", "2027-09-14 09:00", "--end", "2027-09-14 17:00", "--tz", "Europe/Berlin")
		return err == nil
	})

	if _, err := cl.WaitFailover(ctx, jobs, master, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	f.failover = time.Since(killed)
	phase("replica promoted")
	wg.Wait()
	phase("all taken that people did meanwhile")
	for deadline := time.Now().Add(3 * time.Minute); rc.HGet(ctx, rdb.CampaignKey(id, "meta"), "state").Val() != "finished"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s not finished 3 minutes after the failover: %d sent", id, clusterSent(rc, id))
		}
	}
	phase("campaign finished")
	time.Sleep(time.Second) // a duplicate, if any, would come now
	for i := range n {
		switch got := sink.Got(fmt.Sprintf("p%05d@example.com", i)); {
		case got == 0:
			f.lost++
		case got > 1:
			f.dups += got - 1
		}
	}

	// The help desk's side: every item is there, once.
	for deadline := time.Now().Add(30 * time.Second); !chat.has(reply); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the staff reply never reached the web chat; it shows:\n%s", strings.Join(chat.seen(), "\n"))
			break
		}
	}
	phase("reply in the chat")
	if n := chat.count(reply); n > 1 {
		t.Errorf("the staff reply shows %d times in the web chat", n)
	}
	slackCount := func() (cards, replies int) {
		_, sl := pl.sent()
		for _, m := range sl {
			if m.Get("channel") == "CSTAFF" && m.Get("thread_ts") == "" {
				cards++
			}
			if strings.Contains(m.Get("text"), "VSME is the voluntary standard") {
				replies++
			}
		}
		return
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cards, replies := slackCount(); cards >= 1 && replies >= 1 {
			break
		}
		if time.Now().After(deadline) {
			cards, replies := slackCount()
			t.Errorf("Slack got %d ticket cards and %d copies of the reply, want one each", cards, replies)
			break
		}
	}
	time.Sleep(time.Second) // a second copy, if any, would come now
	if cards, replies := slackCount(); cards != 1 || replies != 1 {
		t.Errorf("Slack got %d ticket cards and %d copies of the reply, want one each", cards, replies)
	}
	phase("the ticket in Slack")
	if page := staff.body(t, "/staff/tickets/"+ticket); strings.Count(page, "VSME is the voluntary standard") != 1 || !strings.Contains(page, "claimed by Bea") {
		t.Errorf("the ticket page lacks its claim or has its reply other than once:\n%s", page)
	}
	if out, err := cli("events"); strings.Count(string(out), "CSR day before") != 1 || strings.Count(string(out), "CSR day during") != 1 {
		t.Errorf("events after the failover: %v\n%s", err, out)
	}
	if out, err := cli("subscribers", "export", reader); !strings.Contains(string(out), `"status": "active"`) {
		t.Errorf("the subscription is not confirmed after the failover: %v\n%s", err, out)
	}
	// An erasure finds the address in the chats on every master (rdb.Scan), the new one included.
	if out, err := cli("subscribers", "delete", reader); err != nil || !strings.Contains(string(out), "erased") {
		t.Errorf("subscribers delete: %v\n%s", err, out)
	}
	msgs, err := rc.XRange(ctx, rdb.WebChatPrefix+other.id, "-", "+").Result()
	for _, m := range msgs {
		if strings.Contains(fmt.Sprint(m.Values), reader) {
			t.Errorf("after the erasure the web chat still has %v", m.Values)
		}
	}
	if err != nil || len(msgs) == 0 {
		t.Errorf("the subscribing web chat: %d messages left, %v", len(msgs), err)
	}
	// Every key on every master is declared, of its type: the new master's included.
	t.Logf("keys by owner: %v", rdbtest.CheckKeyspace(t, rc))
	return f
}

// clusterDupBound is how many duplicates a failover may cause with procs mailing processes: as when Redis
// restarts (campaigns/queue.go), each of their 8 connections can have two messages sent but not recorded.
func clusterDupBound(procs int) int { return procs * 8 * 2 }

// clusterSent reads the campaign's sent count from the cluster, 0 while it cannot.
func clusterSent(rc redis.UniversalClient, id string) int {
	n, _ := rc.HGet(context.Background(), rdb.CampaignKey(id, "counts"), "sent").Int()
	return n
}

// clusterCSRF is the double-submit token the test's forms carry, in a cookie and a field.
const clusterCSRF = "0123456789abcdef0123456789abcdef"

// webChat is a web chat session followed as the page follows it.
type webChat struct {
	base, id string
	mu       sync.Mutex
	data     []string
}

// followChat opens a web chat session at base and follows its event stream, reconnecting as a page does.
func followChat(t *testing.T, base string) *webChat {
	t.Helper()
	resp, err := http.Post(base+"/api/chat/session", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ Chat string }
	json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	c := &webChat{base: base, id: s.Chat}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		last := ""
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/chat/events?chat="+c.id, nil)
			if last != "" {
				req.Header.Set("Last-Event-ID", last)
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					line := sc.Text()
					if v, ok := strings.CutPrefix(line, "id: "); ok {
						last = v
					} else if v, ok := strings.CutPrefix(line, "data: "); ok {
						c.mu.Lock()
						c.data = append(c.data, v)
						c.mu.Unlock()
					}
				}
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond): // as a browser's EventSource retries
			}
		}
	}()
	return c
}

func (c *webChat) say(t *testing.T, text string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"chat": c.id, "text": text})
	resp, err := http.Post(c.base+"/api/chat/messages", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("web chat %q: %s", text, resp.Status)
	}
}

func (c *webChat) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.data...)
}

func (c *webChat) count(text string) int {
	n := 0
	for _, d := range c.seen() {
		n += strings.Count(d, text)
	}
	return n
}

func (c *webChat) has(text string) bool { return c.count(text) > 0 }

// staffSession is a staff member logged in to the staff pages.
type staffSession struct {
	base, cookie string
	client       *http.Client
}

func clusterStaffLogin(t *testing.T, base, token string) *staffSession {
	t.Helper()
	s := &staffSession{base: base, client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	req, _ := http.NewRequest("POST", base+"/staff/login", strings.NewReader(url.Values{"name": {"Bea"}, "secret": {token}, "csrf": {clusterCSRF}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "csrdesk_csrf", Value: clusterCSRF})
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "csrdesk_staff" {
			s.cookie = c.Value
		}
	}
	if s.cookie == "" {
		t.Fatalf("staff login: %s, no session", resp.Status)
	}
	return s
}

func (s *staffSession) do(t *testing.T, method, path string, form url.Values) (*http.Response, error) {
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", clusterCSRF)
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "csrdesk_csrf", Value: clusterCSRF})
	req.AddCookie(&http.Cookie{Name: "csrdesk_staff", Value: s.cookie})
	return s.client.Do(req)
}

func (s *staffSession) body(t *testing.T, path string) string {
	resp, err := s.do(t, "GET", path, nil)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// post sends a staff form and returns the status and where it redirects (with ?error= when the action failed).
func (s *staffSession) post(t *testing.T, path string, form url.Values) (int, string) {
	resp, err := s.do(t, "POST", path, form)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestClusterSmoke is the cluster run, small (400 recipients), for make test: about 25 s, most of it the build and
// the cluster's creation.
func TestClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster and csrdesk processes")
	}
	bin := buildBinary(t)
	f := clusterRun(t, bin, 400, 400)
	t.Logf("cluster: %d recipients, %d lost, %d duplicated; failover %s, all taken %s after the kill (%d tries refused); the killed master also held: %q",
		f.recipients, f.lost, f.dups, f.failover.Round(10*time.Millisecond), f.served.Round(10*time.Millisecond), f.refused, f.killedHeld)
	if f.lost > 0 {
		t.Errorf("%d of %d recipients never mailed", f.lost, f.recipients)
	}
	if bound := clusterDupBound(2); f.dups > bound {
		t.Errorf("%d duplicates, more than the %d two mailing processes can have in flight", f.dups, bound)
	}
}
