package campaigns

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"csrdesk/internal/rdb"
	"csrdesk/internal/smtptest"
	"csrdesk/templates"
)

// campaignFixture imports n subscribers into a list and creates a campaign to it.
func campaignFixture(t *testing.T, n int) (*Store, *Campaign) {
	t.Helper()
	s := mustStore(t, "all")
	return s, campaignFor(t, s, n)
}

// campaignFor imports n subscribers into s's list "all" and creates a campaign to it.
func campaignFor(t *testing.T, s *Store, n int) *Campaign {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("email,name,language\n")
	langs := []string{"en", "de", "it", "fr", "es"}
	for i := range n {
		fmt.Fprintf(&b, "p%05d@example.com,Person %d,%s\n", i, i, langs[i%5])
	}
	if rep, err := s.Import(ctx, strings.NewReader(b.String()), ImportOptions{List: "all", Confirmed: true}); err != nil || rep.Added != n {
		t.Fatalf("import: %+v %v", rep, err)
	}
	layout := mustLayout(t)
	content := Content{Subject: map[string]string{"": "Invitation: CSR day at EMO", "de": "Einladung: CSR-Tag auf der EMO"},
		Body: map[string]string{"": "Dear {{.Subscriber.Name}},\n\nJoin us at **EMO**.", "de": "Liebe/r {{.Subscriber.Name}},\n\nbesuchen Sie uns auf der **EMO**."}}
	c, err := s.CreateCampaign(ctx, Campaign{Name: "emo", Lists: []string{"all"}, From: "news@platform.example", Content: content},
		func(c Content) error { _, err := Compile(c, layout); return err })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startedFixture is campaignFixture with the campaign started.
func startedFixture(t *testing.T, n int) (*Store, *Campaign) {
	t.Helper()
	s, c := campaignFixture(t, n)
	mustStart(t, s, c)
	return s, c
}

func mustStart(t *testing.T, s *Store, c *Campaign) {
	t.Helper()
	if _, err := s.Transition(context.Background(), c.ID, "start"); err != nil {
		t.Fatal(err)
	}
}

// waitSentOver waits until a campaign has sent more than n messages.
func waitSentOver(t *testing.T, s *Store, id int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err := s.CampaignStatus(context.Background(), id); err == nil && st.Sent > n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %d did not get past %d sent", id, n)
		}
	}
}

func mustLayout(tb testing.TB) *templates.Mail {
	tb.Helper()
	l, err := templates.MailLayout()
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func testWorker(t testing.TB, s *Store, addr string, cfg WorkerConfig) *Worker {
	t.Helper()
	return urlWorker(t, s, "smtp://"+addr+"?tls=none", cfg)
}

// urlWorker is testWorker for a CSRDESK_SMTP_URL.
func urlWorker(t testing.TB, s *Store, url string, cfg WorkerConfig) *Worker {
	t.Helper()
	tr, err := ParseSMTP(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PublicURL, cfg.Secret, cfg.Poll = "https://platform.example", []byte("secret"), 20*time.Millisecond
	return NewWorker(s, tr, mustLayout(t), cfg, slog.New(slog.DiscardHandler))
}

func run(t *testing.T, ws ...*Worker) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(ctx) }()
	}
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func waitState(t *testing.T, s *Store, id int64, state string) *Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := s.CampaignStatus(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign still %s: %+v", st.State, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCampaignDeliversExactlyOnce(t *testing.T) {
	sk := smtptest.New(t)
	s, c := startedFixture(t, 2000)
	cfg := DefaultWorkerConfig()
	cfg.Ahead = 300 // the scheduler works in several steps
	run(t, testWorker(t, s, sk.Addr, cfg))
	st := waitState(t, s, c.ID, Finished)
	if st.Total != 2000 || st.Sent != 2000 || st.Failed != 0 || st.Pending != 0 || st.Retrying != 0 {
		t.Errorf("status: %+v", st)
	}
	recipients, messages, dups := sk.Counts()
	if recipients != 2000 || messages != 2000 || len(dups) != 0 {
		t.Errorf("the sink got %d messages for %d recipients; duplicates: %v", messages, recipients, dups)
	}
	// A German subscriber's message, its folded header lines unfolded (RFC 5322 allows folding long headers).
	msg := strings.NewReplacer("\r\n ", " ", "\n ", " ").Replace(sk.Message("p00001@example.com"))
	for _, want := range []string{"Subject: Einladung: CSR-Tag auf der EMO", "Liebe/r Person 1", "<strong>EMO</strong>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		"List-Unsubscribe: <https://platform.example/unsubscribe/", "<mailto:unsubscribe@platform.example?subject=unsubscribe%20", "Abmelden"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestTemporaryAndPermanentRefusals(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := campaignFixture(t, 50)
	for i := range 10 {
		sk.TempFail(fmt.Sprintf("p%05d@example.com", i), 2) // busy twice, then fine
	}
	sk.PermFail("p00040@example.com")
	sk.PermFail("p00041@example.com")
	s.Transition(ctx, c.ID, "start")
	cfg := DefaultWorkerConfig()
	cfg.RetryBase = 10 * time.Millisecond
	run(t, testWorker(t, s, sk.Addr, cfg))
	st := waitState(t, s, c.ID, Finished)
	if st.Sent != 48 || st.Failed != 2 || st.Retrying != 0 {
		t.Errorf("status: %+v", st)
	}
	_, messages, dups := sk.Counts()
	if messages != 48 || len(dups) != 0 {
		t.Errorf("%d messages, duplicates %v", messages, dups)
	}
	if sk.TempFailsLeft("p00003@example.com") != 0 {
		t.Error("a temporarily refused recipient was not retried")
	}
	fails, _ := s.Failures(ctx, c.ID)
	if len(fails) != 2 || fails[0].Code != 550 || !strings.Contains(fails[0].Reason, "no such user") {
		t.Errorf("failures: %+v", fails)
	}
	if sk.Got("p00040@example.com") != 0 {
		t.Error("a permanently refused recipient got mail")
	}
}

func TestTwoWorkersNoDuplicates(t *testing.T) {
	sk := smtptest.New(t)
	s, c := startedFixture(t, 1000)
	cfg := DefaultWorkerConfig()
	cfg.Ahead = 200
	run(t, testWorker(t, s, sk.Addr, cfg), testWorker(t, s, sk.Addr, cfg))
	st := waitState(t, s, c.ID, Finished)
	recipients, messages, dups := sk.Counts()
	if st.Sent != 1000 || recipients != 1000 || messages != 1000 || len(dups) != 0 {
		t.Errorf("status %+v; sink %d recipients, %d messages, duplicates %v", st, recipients, messages, dups)
	}
}

func TestPauseAndResume(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 600)
	cfg := DefaultWorkerConfig()
	cfg.Rate = 400 // slow enough to pause in the middle
	stop := run(t, testWorker(t, s, sk.Addr, cfg))
	waitSentOver(t, s, c.ID, 50)
	if _, err := s.Transition(ctx, c.ID, "pause"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // jobs already taken finish
	paused, _ := s.CampaignStatus(ctx, c.ID)
	time.Sleep(300 * time.Millisecond)
	if again, _ := s.CampaignStatus(ctx, c.ID); again.Sent != paused.Sent || again.State != Paused {
		t.Errorf("still sending while paused: %d then %d", paused.Sent, again.Sent)
	}
	if paused.Sent >= 600 {
		t.Fatalf("paused too late to test anything: %+v", paused)
	}
	if _, err := s.Transition(ctx, c.ID, "pause"); err == nil {
		t.Error("pausing a paused campaign was accepted")
	}
	stop()
	// Resume with a new worker, as after a restart.
	s.Transition(ctx, c.ID, "resume")
	run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
	st := waitState(t, s, c.ID, Finished)
	recipients, messages, dups := sk.Counts()
	if st.Sent != 600 || recipients != 600 || messages != 600 || len(dups) != 0 {
		t.Errorf("status %+v; sink %d recipients, %d messages, duplicates %v", st, recipients, messages, dups)
	}
}

func TestAutoPauseWhenTheServerRefusesEverything(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	sk.TempFailEvery(1) // 451 to everybody, as a mail provider that has throttled the account
	s, c := startedFixture(t, 100)
	cfg := DefaultWorkerConfig()
	cfg.PauseAfter, cfg.RetryBase = 10, time.Hour
	run(t, testWorker(t, s, sk.Addr, cfg))
	st := waitState(t, s, c.ID, Paused)
	cmp, _ := s.Campaign(ctx, c.ID)
	if st.Sent != 0 || !strings.Contains(cmp.Reason, "paused by itself after 10 failures in a row; last: 451") {
		t.Errorf("status %+v, reason %q", st, cmp.Reason)
	}
}

// Retries come back in bunches of recipients refused before: their failing again must not pause a campaign
// that most recipients receive.
func TestRetriesDoNotPauseTheCampaign(t *testing.T) {
	sk := smtptest.New(t)
	sk.TempFailEvery(4)
	s, c := startedFixture(t, 200)
	cfg := DefaultWorkerConfig()
	cfg.PauseAfter, cfg.MaxAttempts, cfg.RetryBase = 10, 4, 10*time.Millisecond
	run(t, testWorker(t, s, sk.Addr, cfg))
	st := waitState(t, s, c.ID, Finished)
	recipients, _, _ := sk.Counts()
	if st.Sent != int64(recipients) || st.Failed != int64(200-recipients) || st.Failed < 20 {
		t.Errorf("status %+v; the sink got %d recipients", st, recipients)
	}
}

// A mail server that cannot be reached or hangs up is nobody's refusal: the recipients wait in the queue
// without using up their attempts, and all get the mail once it is back.
func TestMailServerDownAndBack(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	sk.HangUp(true)
	s, c := startedFixture(t, 100)
	cfg := DefaultWorkerConfig()
	cfg.PauseAfter, cfg.MaxAttempts = 5, 2
	run(t, testWorker(t, s, sk.Addr, cfg))
	time.Sleep(2500 * time.Millisecond) // each connection fails, waits a second, fails again, waits two
	st, _ := s.CampaignStatus(ctx, c.ID)
	if st.State != Running || st.Sent != 0 || st.Failed != 0 || st.Retrying != 0 || st.Pending != 100 {
		t.Fatalf("while the server is down: %+v", st)
	}
	if n := s.rdb.HLen(ctx, campaignKeys(c.ID).attempts).Val(); n != 0 {
		t.Errorf("%d recipients used up an attempt while the server was down", n)
	}
	sk.HangUp(false)
	st = waitState(t, s, c.ID, Finished)
	recipients, messages, dups := sk.Counts()
	if st.Sent != 100 || st.Failed != 0 || recipients != 100 || messages != 100 || len(dups) != 0 {
		t.Errorf("after the server came back: %+v; sink %d recipients, %d messages, duplicates %v", st, recipients, messages, dups)
	}
}

func TestFolderTransport(t *testing.T) {
	s, c := startedFixture(t, 5)
	dir := t.TempDir()
	cfg := DefaultWorkerConfig()
	cfg.Conns, cfg.Poll, cfg.PublicURL, cfg.Secret = 2, 20*time.Millisecond, "https://platform.example", []byte("s")
	run(t, NewWorker(s, &Folder{Dir: dir}, mustLayout(t), cfg, slog.New(slog.DiscardHandler)))
	waitState(t, s, c.ID, Finished)
	files, _ := filepath.Glob(filepath.Join(dir, fmt.Sprint(c.ID), "*.eml"))
	if len(files) != 5 {
		t.Fatalf("%d .eml files, want 5", len(files))
	}
	data, _ := os.ReadFile(files[0])
	if !strings.Contains(string(data), "List-Unsubscribe-Post: List-Unsubscribe=One-Click") {
		t.Errorf("eml:\n%s", data)
	}
}

// An unsubscribe token names the subscriber by id, not by address, and cannot be forged; the older tokens that
// carry the address, in mails sent before, still work.
func TestUnsubscribeToken(t *testing.T) {
	ctx := context.Background()
	s := mustStore(t, "news")
	mustActive(t, s, "anna@example.it")
	tok := tokenOf(t, s, []byte("k1"), "anna@example.it")
	if strings.Contains(tok, "anna") || strings.Contains(tok, base64.RawURLEncoding.EncodeToString([]byte("anna@example.it"))[:8]) {
		t.Errorf("the token %q shows the address", tok)
	}
	if email, err := s.TokenAddress(ctx, []byte("k1"), tok); err != nil || email != "anna@example.it" {
		t.Errorf("round trip: %q %v", email, err)
	}
	old := addressToken([]byte("k1"), "anna@example.it")
	if email, err := s.TokenAddress(ctx, []byte("k1"), old); err != nil || email != "anna@example.it" {
		t.Errorf("an old mail's token: %q %v", email, err)
	}
	// lastChanged changes a token's last character (to "0", or to "1" where it was "0").
	lastChanged := func(s string) string {
		if strings.HasSuffix(s, "0") {
			return s[:len(s)-1] + "1"
		}
		return s[:len(s)-1] + "0"
	}
	for _, bad := range []string{lastChanged(tok), "aaaaaaaaaa" + tok[strings.Index(tok, "~"):], lastChanged(old),
		"YmVh." + old[strings.Index(old, ".")+1:], "nodot", "", "~"} {
		if _, err := s.TokenAddress(ctx, []byte("k1"), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("forged token %q: %v", bad, err)
		}
	}
	for _, other := range []string{tok, old} {
		if _, err := s.TokenAddress(ctx, []byte("k2"), other); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted under another secret: %v", other, err)
		}
	}
	if err := s.Erase(ctx, "anna@example.it"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TokenAddress(ctx, []byte("k1"), tok); !errors.Is(err, ErrNotFound) {
		t.Errorf("the token of an erased subscriber: %v", err)
	}
}

// tokenOf is the unsubscribe token of a stored subscriber.
func tokenOf(t testing.TB, s *Store, secret []byte, email string) string {
	t.Helper()
	sub, err := s.Subscriber(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return UnsubscribeToken(secret, sub)
}

func TestRepeatedHardBouncesMarkTheSubscriber(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	sk.PermFail("p00000@example.com")
	s, _ := campaignFixture(t, 1)
	layout := mustLayout(t)
	for i := range 3 {
		c, err := s.CreateCampaign(ctx, Campaign{Name: fmt.Sprint("c", i), Lists: []string{"all"}, From: "news@platform.example",
			Content: Content{Subject: map[string]string{"": "s"}, Body: map[string]string{"": "b"}}},
			func(c Content) error { _, err := Compile(c, layout); return err })
		if err != nil {
			t.Fatal(err)
		}
		s.Transition(ctx, c.ID, "start")
		stop := run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
		waitState(t, s, c.ID, Finished)
		stop()
		sub, _ := s.Subscriber(ctx, "p00000@example.com")
		want := Active
		if i == 2 {
			want = Bounced
		}
		if sub.Status != want {
			t.Errorf("after %d hard bounces: %s, want %s", i+1, sub.Status, want)
		}
	}
}

func TestSegment(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, _ := campaignFixture(t, 50) // languages cycle en, de, it, fr, es
	layout := mustLayout(t)
	check := func(c Content) error { _, err := Compile(c, layout); return err }
	content := Content{Subject: map[string]string{"": "s"}, Body: map[string]string{"": "b"}}
	if _, err := s.CreateCampaign(ctx, Campaign{Name: "x", Lists: []string{"all"}, From: "n@p.example", Content: content, Segment: `Languge == "de"`}, check); !errors.Is(err, ErrInvalid) {
		t.Errorf("a segment naming an unknown field: %v", err)
	}
	c, err := s.CreateCampaign(ctx, Campaign{Name: "de", Lists: []string{"all"}, From: "n@p.example", Content: content,
		Segment: `Language in ["de", "it"] && Name != "Person 1"`}, check)
	if err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c.ID, "start")
	run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
	st := waitState(t, s, c.ID, Finished)
	if recipients, _, _ := sk.Counts(); st.Sent != 19 || recipients != 19 || sk.Got("p00001@example.com") != 0 || sk.Got("p00006@example.com") != 1 {
		t.Errorf("segment: status %+v, %d recipients", st, recipients)
	}
}

func TestDKIM(t *testing.T) {
	ctx := context.Background()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	signer, err := DKIM(keyFile, "platform.example", "mail2026")
	if err != nil {
		t.Fatal(err)
	}
	// Over SMTP, with lines that start with "." (which go escaped, RFC 5321 4.5.2): the signature holds for the
	// message as the server takes it in.
	s, _ := campaignFixture(t, 2)
	body := "Dear {{.Subscriber.Name}},\n\n.5 mm is the tolerance.\n\n..and two dots.\n\n."
	c, err := s.CreateCampaign(ctx, Campaign{Name: "dots", Lists: []string{"all"}, From: "news@platform.example",
		Content: Content{Subject: map[string]string{"": "Tolerances"}, Body: map[string]string{"": body}}},
		func(c Content) error { _, err := Compile(c, mustLayout(t)); return err })
	if err != nil {
		t.Fatal(err)
	}
	s.Transition(ctx, c.ID, "start")
	sink := smtptest.New(t)
	cfg := DefaultWorkerConfig()
	cfg.Conns, cfg.DKIM = 1, signer
	run(t, testWorker(t, s, sink.Addr, cfg))
	waitState(t, s, c.ID, Finished)
	data := []byte(sink.Message("p00000@example.com"))
	if text := mustParseMail(t, string(data)).parts["text/plain"]; !strings.Contains(text, "\r\n.5 mm is the tolerance.\r\n\r\n..and two dots.\r\n\r\n.\r\n") {
		t.Errorf("the lines that start with a dot arrived as\n%s", text)
	}
	// Verify the signature with an independent implementation, the public key served as the DNS record would.
	pub := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&key.PublicKey))
	verifications, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "mail2026._domainkey.platform.example" {
			return nil, fmt.Errorf("no record for %s", domain)
		}
		return []string{"v=DKIM1; k=rsa; p=" + pub}, nil
	}})
	if err != nil || len(verifications) != 1 || verifications[0].Err != nil {
		t.Fatalf("DKIM verification: %v %+v", err, *verifications[0])
	}
	signed := strings.ToLower(strings.Join(verifications[0].HeaderKeys, ","))
	if verifications[0].Domain != "platform.example" || !strings.Contains(signed, "list-unsubscribe-post") || !strings.Contains(signed, "list-unsubscribe,") {
		t.Errorf("signature: domain %s, signed headers %s", verifications[0].Domain, signed)
	}
	if _, err := DKIM(filepath.Join(t.TempDir(), "missing.pem"), "d", "s"); err == nil {
		t.Error("a missing key file was accepted")
	}
}

func TestScheduledCampaignStartsWhenDue(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s := mustStore(t, "all")
	s.Import(ctx, strings.NewReader("email\na@example.com\n"), ImportOptions{List: "all", Confirmed: true})
	layout := mustLayout(t)
	c, err := s.CreateCampaign(ctx, Campaign{Name: "later", Lists: []string{"all"}, From: "n@p.example", SendAt: time.Now().Add(400 * time.Millisecond),
		Content: Content{Subject: map[string]string{"": "s"}, Body: map[string]string{"": "b"}}}, func(c Content) error { _, err := Compile(c, layout); return err })
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Transition(ctx, c.ID, "start"); c.State != Scheduled {
		t.Fatalf("a campaign with a send time ahead started as %s, want scheduled", c.State)
	}
	run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
	time.Sleep(200 * time.Millisecond)
	if sk.Got("a@example.com") != 0 {
		t.Error("sent before its time")
	}
	waitState(t, s, c.ID, Finished)
	if sk.Got("a@example.com") != 1 {
		t.Error("not sent when due")
	}
}

// A worker that stops (shutdown, or the campaign paused) gives the jobs it has read but not started back to the
// queue, so that nothing waits pending for ClaimIdle before another worker can send it.
func TestStoppedWorkerGivesBackItsJobs(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 300)
	cfg := DefaultWorkerConfig()
	cfg.Rate = 100 // reads a batch of 200 and sends it over two seconds
	stop := run(t, testWorker(t, s, sk.Addr, cfg))
	waitSentOver(t, s, c.ID, 10)
	stop()
	k := campaignKeys(c.ID)
	pending, err := s.rdb.XPending(ctx, k.jobs, workerGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("%d jobs left pending after the worker stopped", pending.Count)
	}
	st, _ := s.CampaignStatus(ctx, c.ID)
	if st.Sent >= 200 {
		t.Fatalf("the worker sent its whole batch before stopping: %+v", st)
	}
	run(t, testWorker(t, s, sk.Addr, DefaultWorkerConfig()))
	st = waitState(t, s, c.ID, Finished)
	recipients, messages, dups := sk.Counts()
	if st.Sent != 300 || recipients != 300 || messages != 300 || len(dups) != 0 {
		t.Errorf("status %+v; sink %d recipients, %d messages, duplicates %v", st, recipients, messages, dups)
	}
}

// Members who leave a list while its campaign is being queued must not make the scheduler skip anybody: its
// place in the list is kept by member, not by position.
func TestLeavingTheListMidCampaignSkipsNobody(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 2500)
	cfg := DefaultWorkerConfig()
	cfg.Ahead = 1000 // one page queued, then the scheduler stops until the queue shortens
	w := testWorker(t, s, sk.Addr, cfg)
	if err := rdb.EnsureGroup(ctx, s.rdb, campaignKeys(c.ID).jobs, workerGroup, "0"); err != nil {
		t.Fatal(err)
	}
	if err := w.schedule(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Two members of the first page leave: one from its start, and the last one queued.
	gone := []string{"p00000@example.com", "p00999@example.com"}
	for _, e := range gone {
		if err := s.Erase(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	run(t, w)
	waitState(t, s, c.ID, Finished)
	recipients, messages, dups := sk.Counts()
	if recipients != 2498 || messages != 2498 || len(dups) != 0 {
		t.Errorf("the sink got %d messages for %d recipients (want 2498); duplicates: %v", messages, recipients, dups)
	}
	for _, e := range []string{"p01000@example.com", "p01001@example.com", "p02499@example.com"} {
		if sk.Got(e) != 1 {
			t.Errorf("%s got %d messages, want 1", e, sk.Got(e))
		}
	}
}

// Recorded jobs are deleted in bulk rather than one by one: while a campaign runs its stream holds what waits,
// what is being sent and a little more, and once it has finished nothing.
func TestRecordedJobsAreTrimmed(t *testing.T) {
	ctx := context.Background()
	sk := smtptest.New(t)
	s, c := startedFixture(t, 5000)
	cfg := DefaultWorkerConfig()
	cfg.Ahead = 200
	run(t, testWorker(t, s, sk.Addr, cfg))
	k := campaignKeys(c.ID)
	longest := int64(0)
	for st, _ := s.CampaignStatus(ctx, c.ID); st.State != Finished; st, _ = s.CampaignStatus(ctx, c.ID) {
		longest = max(longest, s.rdb.XLen(ctx, k.jobs).Val())
		time.Sleep(2 * time.Millisecond)
	}
	// At most: a page of the list queued on top of Ahead, a read batch with the worker, a read batch and a stream
	// node recorded but not trimmed yet.
	if bound := int64(cfg.Ahead + schedulePage + 2*readBatch + 100); longest > bound {
		t.Errorf("the stream held up to %d jobs, more than %d: recorded jobs are not deleted", longest, bound)
	}
	if n := s.rdb.XLen(ctx, k.jobs).Val(); n != 0 {
		t.Errorf("%d jobs left in the stream of a finished campaign", n)
	}
	recipients, messages, dups := sk.Counts()
	if recipients != 5000 || messages != 5000 || len(dups) != 0 {
		t.Errorf("the sink got %d messages for %d recipients; duplicates: %v", messages, recipients, dups)
	}
}
