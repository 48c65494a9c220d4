package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"csrdesk/internal/smtptest"
)

// importPeople creates list "all" with n subscribers.
func importPeople(t *testing.T, e func(string) string, n int) {
	t.Helper()
	if _, _, err := runCmd(t, e, "lists", "create", "all"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("email,name,language\n")
	for i := range n {
		fmt.Fprintf(&b, "p%05d@example.com,Person %d,%s\n", i, i, []string{"en", "de", "it"}[i%3])
	}
	file := filepath.Join(t.TempDir(), "people.csv")
	os.WriteFile(file, []byte(b.String()), 0o644)
	if out, _, err := runCmd(t, e, "subscribers", "import", file, "--list", "all", "--confirmed"); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
}

func createCampaign(t *testing.T, e func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "emo.md"), []byte("Dear {{.Subscriber.Name}},\n\nmeet us at **EMO Hannover**."), 0o644)
	os.WriteFile(filepath.Join(dir, "emo.de.md"), []byte("Subject: Einladung zur EMO\nHallo {{.Subscriber.Name}},\n\ntreffen Sie uns auf der **EMO**."), 0o644)
	out, _, err := runCmd(t, e, "campaign", "create", "--name", "EMO 2027", "--subject", "Meet us at EMO", "--body-file", filepath.Join(dir, "emo.md"),
		"--list", "all", "--from", "news@platform.example")
	if err != nil {
		t.Fatalf("campaign create: %v", err)
	}
	return strings.TrimSpace(out)
}

func status(t *testing.T, e func(string) string, id string) map[string]any {
	t.Helper()
	out, _, err := runCmd(t, e, "campaign", "status", id, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %q", out)
	}
	return st
}

func TestCampaignCommands(t *testing.T) {
	sink := smtptest.New(t)
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_SMTP_URL", "smtp://"+sink.Addr+"?tls=none", "CSRDESK_MAIL_RATE", "0")
	importPeople(t, e, 30)
	id := createCampaign(t, e)
	if id != "1" {
		t.Fatalf("campaign id %q", id)
	}
	out, _, err := runCmd(t, e, "campaign", "preview", id, "--subscriber", "p00001@example.com")
	if err != nil || !strings.HasPrefix(out, "Subject: Einladung zur EMO\n") || !strings.Contains(out, "Hallo Person 1") {
		t.Errorf("preview: %v\n%s", err, out)
	}
	if out, _, err := runCmd(t, e, "campaign", "test", id, "--to", "me@platform.example"); err != nil || sink.Got("me@platform.example") != 1 {
		t.Errorf("test: %v %q", err, out)
	}
	if !strings.Contains(sink.Message("me@platform.example"), "[TEST] Meet us at EMO") {
		t.Errorf("test message: %s", sink.Message("me@platform.example"))
	}
	if st := status(t, e, id); st["state"] != "draft" || st["total"] != 0.0 {
		t.Errorf("status of a draft: %v", st)
	}
	if out, _, err := runCmd(t, e, "campaign", "start", id); err != nil || out != "campaign 1 is running\n" {
		t.Fatalf("start: %v %q", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"worker"}, e, os.Stdout, &syncBuffer{}) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for st := status(t, e, id); st["state"] != "finished"; st = status(t, e, id) {
		if time.Now().After(deadline) {
			t.Fatalf("campaign did not finish: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := status(t, e, id)
	want := map[string]any{"id": 1.0, "state": "finished", "total": 30.0, "sent": 30.0, "failed": 0.0, "pending": 0.0, "retrying": 0.0}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("status %s = %v, want %v", k, st[k], v)
		}
	}
	if _, _, err := runCmd(t, e, "campaign", "resume", id); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("resuming a finished campaign: %v", err)
	}
	if _, _, err := runCmd(t, e, "campaign", "status", "99"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("status of a missing campaign: %v", err)
	}
}

// buildBinary builds csrdesk for tests that run it as a process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "csrdesk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestWorkerKilledMidCampaign kills a real worker process (SIGKILL) several times in the middle of a campaign
// and starts it again: no recipient is skipped, and duplicates stay within what the killed worker had in flight.
func TestWorkerKilledMidCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := buildBinary(t)
	sink := smtptest.New(t)
	url := redisSrv.URL(redisSrv.DB(t))
	e := env("CSRDESK_REDIS_URL", url, "CSRDESK_SMTP_URL", "smtp://"+sink.Addr+"?tls=none", "CSRDESK_MAIL_RATE", "800")
	const n = 3000
	importPeople(t, e, n)
	id := createCampaign(t, e)
	runCmd(t, e, "campaign", "start", id)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "worker")
		cmd.Env = append(os.Environ(), "CSRDESK_SECRET=test secret", "CSRDESK_REDIS_URL="+url, "CSRDESK_SMTP_URL=smtp://"+sink.Addr+"?tls=none", "CSRDESK_MAIL_RATE=800", "CSRDESK_LOG_LEVEL=warn")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	const kills = 5
	for k := range kills {
		cmd := start()
		target := float64((k + 1) * n / (kills + 2))
		deadline := time.Now().Add(30 * time.Second)
		for status(t, e, id)["sent"].(float64) < target && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	// The last worker finishes the campaign. Jobs of the killed ones are claimed after ClaimIdle (2 minutes by
	// default), so this test shortens it through the worker's environment.
	cmd := exec.Command(bin, "worker")
	cmd.Env = append(os.Environ(), "CSRDESK_SECRET=test secret", "CSRDESK_REDIS_URL="+url, "CSRDESK_SMTP_URL=smtp://"+sink.Addr+"?tls=none", "CSRDESK_MAIL_RATE=0",
		"CSRDESK_LOG_LEVEL=warn", "CSRDESK_MAIL_CLAIM_IDLE=1s")
	cmd.Start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for status(t, e, id)["state"] != "finished" {
		if time.Now().After(deadline) {
			t.Fatalf("campaign did not finish: %v", status(t, e, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
	recipients, messages, dups := sink.Counts()
	t.Logf("%d kills: %d recipients, %d messages, %d duplicates", kills, recipients, messages, len(dups))
	if recipients != n {
		t.Errorf("%d of %d recipients got the mail: some were skipped", recipients, n)
	}
	// A killed worker can have at most two messages per connection (8) between the server's acceptance and the
	// record: the one whose outcome was being committed and the next.
	if len(dups) > kills*2*8 {
		t.Errorf("%d duplicates after %d kills, more than the in-flight window allows", len(dups), kills)
	}
	if st := status(t, e, id); st["sent"] != float64(n) {
		t.Errorf("status: %v", st)
	}
}
