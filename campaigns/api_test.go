package campaigns

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"csrdesk/internal/rdb/rdbtest"
	"csrdesk/internal/smtptest"
)

// serveAPI serves api and returns a function that calls it with a bearer token ("" for none).
func serveAPI(t *testing.T, api *API) func(method, path, body, token string) (int, string) {
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return func(method, path, body, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

func TestAPI(t *testing.T) {
	sk := smtptest.New(t)
	s := mustStore(t)
	tr, _ := ParseSMTP("smtp://" + sk.Addr + "?tls=none")
	api := &API{Store: s, Layout: mustLayout(t), Transport: tr, Worker: WorkerConfig{PublicURL: "https://p.example", Secret: []byte("k")},
		Token: "tok", Log: slog.New(slog.DiscardHandler)}
	call := serveAPI(t, api)
	if code, _ := call("GET", "/api/lists", "", "wrong"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	if code, body := call("POST", "/api/lists", `{"name":"news"}`, "tok"); code != 201 {
		t.Fatalf("create list: %d %s", code, body)
	}
	if code, _ := call("POST", "/api/lists", `{"name":"news"}`, "tok"); code != 409 {
		t.Errorf("list twice: %d", code)
	}
	code, body := call("POST", "/api/lists/news/subscribers?confirmed=true", "email,name,language\nana@example.es,Ana,es\nbad,,\n", "tok")
	if code != 200 || !strings.Contains(body, `"Added":1`) || !strings.Contains(body, `line 3: \"bad\" is not an email address`) {
		t.Errorf("import: %d %s", code, body)
	}
	if code, body := call("GET", "/api/lists/news/subscribers", "", "tok"); code != 200 || !strings.Contains(body, "ana@example.es,Ana,,,es,,active") {
		t.Errorf("export: %d %s", code, body)
	}
	code, body = call("POST", "/api/campaigns", `{"name":"n","subject":"Hola","body":"Hola {{.Subscriber.Nmae}}","lists":["news"],"from":"n@p.example"}`, "tok")
	if code != 400 || !strings.Contains(body, "Nmae") {
		t.Errorf("campaign with a template mistake: %d %s", code, body)
	}
	code, body = call("POST", "/api/campaigns", `{"name":"n","subject":"News","body":"Hi {{.Subscriber.Name}}","bodies":{"es":"Hola {{.Subscriber.Name}}"},"lists":["news"],"from":"n@p.example"}`, "tok")
	var c Campaign
	if json.Unmarshal([]byte(body), &c); code != 201 || c.ID != 1 || c.State != Draft {
		t.Fatalf("create campaign: %d %s", code, body)
	}
	if code, body := call("GET", "/api/campaigns/1/preview?subscriber=ana@example.es", "", "tok"); code != 200 || !strings.Contains(body, "Hola Ana") {
		t.Errorf("preview: %d %s", code, body)
	}
	if code, body := call("POST", "/api/campaigns/1/test", `{"to":"me@p.example"}`, "tok"); code != 200 || sk.Got("me@p.example") != 1 {
		t.Errorf("test: %d %s", code, body)
	}
	if code, body := call("POST", "/api/campaigns/1/start", "", "tok"); code != 200 || !strings.Contains(body, `"state":"running"`) {
		t.Errorf("start: %d %s", code, body)
	}
	if code, _ := call("POST", "/api/campaigns/1/resume", "", "tok"); code != 409 {
		t.Errorf("resume a running campaign: %d", code)
	}
	if code, _ := call("GET", "/api/campaigns/99/status", "", "tok"); code != 404 {
		t.Errorf("missing campaign: %d", code)
	}
	if code, _ := call("POST", "/api/campaigns", `{"nope":1}`, "tok"); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
	stop := run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := call("GET", "/api/campaigns/1/status", "", "tok")
		if strings.Contains(body, `"state":"finished"`) {
			if !strings.Contains(body, `"total":1,"sent":1`) {
				t.Errorf("status: %d %s", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not finished: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := call("GET", "/api/campaigns/1/failures", "", "tok"); code != 200 || body != "[]\n" {
		t.Errorf("failures: %d %q", code, body)
	}
}

func TestAPISubscriptionsAndPrivacy(t *testing.T) {
	sink := smtptest.New(t)
	s, subs, _ := mustSubscriptions(t, sink)
	api := &API{Store: s, Layout: mustLayout(t), Token: "tok", Log: slog.New(slog.DiscardHandler), Subscriptions: subs,
		Inbound: &Inbound{Store: s, Secret: testSecret, HardBounces: 3}}
	var forgotten []string
	api.OnErase = func(_ context.Context, email string) error { forgotten = append(forgotten, email); return nil }
	api2 := serveAPI(t, api)
	call := func(method, path, body string) (int, string) { t.Helper(); return api2(method, path, body, "tok") }
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"email":"jo@example.de","language":"de","source":"fair app"}`, 202, "confirmation sent"},
		{`{"email":"not an address"}`, 400, "not an email address"},
		{`{"email":"jo@example.de","lists":["secret"]}`, 404, `list \"secret\": not found`},
		{`{"email":"jo@example.de","colour":"red"}`, 400, "unknown field"},
	} {
		if code, body := call("POST", "/api/subscribe", tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("subscribe %s: %d %s", tc.body, code, body)
		}
	}
	if sink.Got("jo@example.de") != 1 || status(t, s, "jo@example.de") != Unconfirmed {
		t.Errorf("confirmation mails: %d", sink.Got("jo@example.de"))
	}
	code, body := call("GET", "/api/subscribers/jo@example.de", "")
	var data PersonalData
	json.Unmarshal([]byte(body), &data)
	if code != 200 || data.Subscriber == nil || len(data.Consent) != 1 || data.Consent[0].Source != "fair app" || data.Consent[0].Via != "api" {
		t.Errorf("personal data: %d %s", code, body)
	}
	if code, body := call("DELETE", "/api/subscribers/jo@example.de", ""); code != 200 || len(forgotten) != 1 {
		t.Errorf("erase: %d %s; chats told: %v", code, body, forgotten)
	}
	if code, _ := call("GET", "/api/subscribers/jo@example.de", ""); code != 404 {
		t.Errorf("personal data after erasure: %d", code)
	}
	// A mail server posts a delivery report for a mail to max: he is marked bounced.
	mustActive(t, s, "max@example.de")
	max, _ := s.Subscriber(context.Background(), "max@example.de")
	dsn := "From: MAILER-DAEMON@mx.example\r\nTo: bounces+0-" + max.ID + "@platform.example\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n" +
		"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; max@example.de\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
	if code, body := call("POST", "/api/inbound", dsn); code != 200 || !strings.Contains(body, "hard bounce for max@example.de") || status(t, s, "max@example.de") != Bounced {
		t.Errorf("inbound report: %d %s; max is %s", code, body, status(t, s, "max@example.de"))
	}
	if code, body := call("POST", "/api/inbound", "From: a@example.com\r\nSubject: hello\r\n\r\nhi"); code != 200 || !strings.Contains(body, "not a bounce") {
		t.Errorf("inbound ordinary mail: %d %s", code, body)
	}
}

// A large import through the API, into a Redis that runs out of memory partway: the answer says at which line it
// stopped and how many rows it stored, with the report so far; posted again once Redis has room, it finishes,
// without adding anyone twice.
func TestAPIImportLarge(t *testing.T) {
	ctx := context.Background()
	srv := rdbtest.Own(t)
	rc := srv.Client(t)
	// This server's durability is not under test: without its AOF the 200,000 rows take some 40% less time.
	if err := rc.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	s := NewStore(rc)
	if err := s.CreateList(ctx, List{Name: "big"}); err != nil {
		t.Fatal(err)
	}
	call := serveAPI(t, &API{Store: s, Token: "tok", Log: slog.New(slog.DiscardHandler)})
	const n = 100000
	file := people(n)
	// Room for some 15,000 of the 100,000 rows (about 1 KB each in Redis).
	used, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var base int64
	fmt.Sscanf(used[strings.Index(used, "used_memory:")+len("used_memory:"):], "%d", &base)
	if err := rc.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+15<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body := call("POST", "/api/lists/big/subscribers?confirmed=true", file, "tok")
	var failed struct {
		Error  string
		Report ImportReport
	}
	if err := json.Unmarshal([]byte(body), &failed); err != nil || code != 503 {
		t.Fatalf("import into a full Redis: %d %.500s", code, body)
	}
	stored := failed.Report.Stored()
	t.Logf("stopped after %v at line %d with %d rows stored", time.Since(start), failed.Report.StoppedAt, stored)
	want := fmt.Sprintf("import stopped at line %d with %d rows stored before it: the datastore failed", stored+2, stored)
	if stored == 0 || stored >= n || failed.Report.StoppedAt != stored+2 || !strings.HasPrefix(failed.Error, want) {
		t.Fatalf("the answer does not say how far it got: %d %.500s", code, body)
	}
	if m, _ := rc.ZCard(ctx, membersKey("big")).Result(); m != int64(stored) {
		t.Errorf("%d members; the answer says %d rows stored", m, stored)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	code, body = call("POST", "/api/lists/big/subscribers?confirmed=true", file, "tok")
	var rep ImportReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || rep.Added != n-stored || rep.Unchanged != stored || rep.Lines != n+1 {
		t.Fatalf("the re-run: %d %.500s", code, body)
	}
	t.Logf("the re-run: %d rows in %v", n, time.Since(start))
	m, _ := rc.ZCard(ctx, membersKey("big")).Result()
	consents, _ := rc.LLen(ctx, consentKey("p000000@example.com")).Result()
	if m != n || consents != 1 {
		t.Errorf("%d members, %d consent records for the first; want %d, 1", m, consents, n)
	}
}
