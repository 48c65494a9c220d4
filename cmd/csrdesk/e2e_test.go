package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/quotedprintable"
	netmail "net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"csrdesk/campaigns"
)

// browser starts a headless Chromium with a phone-sized window and its own profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: `make test` installs it when run as root, or: sudo apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(390, 844),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	// The first action starts the browser and ties it to its context: start it here, not under a step's timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestWebChatAndStaffInbox drives the whole help desk loop in a browser: a person asks in the web chat and gets
// an answer, asks for a person, staff log in to the inbox and answer, and the answer appears in the chat.
func TestWebChatAndStaffInbox(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	addr := freeAddr(t)
	startServe(t, env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr,
		"CSRDESK_STAFF_TOKEN", "s3cret-token", "CSRDESK_OFFICE_HOURS", "always"), addr)
	base := "http://" + addr

	person := browser(t)
	botSays := func(text string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(`//li[contains(@class,"msg")][contains(@class,"bot") or contains(@class,"staff")]//div[contains(., "` + text + `")]`)
	}
	steps := []struct {
		name string
		do   chromedp.Action[chromedp.Void]
	}{
		{"open the chat", chromedp.Navigate(base + "/chat")},
		{"see the welcome", botSays("CSR help desk of the machine tool sector platform")},
		{"type a question", chromedp.SendKeys(chromedp.CSS("#text"), "Does the CSRD apply to our company?")},
		{"send it", chromedp.Click(chromedp.CSS("#send"))},
		{"see the answer", botSays("Omnibus I Directive")},
		{"type markup", chromedp.SendKeys(chromedp.CSS("#text"), `<img src=x onerror="document.title='pwned'"> hello?`)},
		{"send it", chromedp.Click(chromedp.CSS("#send"))},
		{"see it as text", chromedp.WaitVisible(`//li[contains(@class,"user")]//div[contains(., "<img src=x")]`)},
		{"ask for a person", chromedp.SendKeys(chromedp.CSS("#text"), "can I talk to a person")},
		{"send it", chromedp.Click(chromedp.CSS("#send"))},
		{"see the handover", botSays("ticket #1")},
	}
	for _, st := range steps {
		ctx, cancel := context.WithTimeout(person, 15*time.Second)
		err := chromedp.Do(ctx, st.do)
		cancel()
		if err != nil {
			log, _ := chromedp.Run(person, chromedp.Text(chromedp.CSS("#log")))
			t.Fatalf("person's side: %s: %v; the chat shows:\n%s", st.name, err, log)
		}
	}

	staff := browser(t)
	err := chromedp.Do(staff,
		chromedp.Navigate(base+"/staff"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=secret]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "Bea"),
		chromedp.SendKeys(chromedp.CSS(`input[name=secret]`), "s3cret-token"),
		chromedp.Submit(chromedp.CSS(`input[name=secret]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/staff/tickets/1"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/staff/tickets/1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#reply-text`)),
	)
	if err != nil {
		t.Fatalf("staff side: %v", err)
	}
	transcript, err := chromedp.Run(staff, chromedp.Text(chromedp.CSS(`.transcript`)))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(staff,
		chromedp.SendKeys(chromedp.CSS(`#reply-text`), "note: check the VSME first"),
		chromedp.Click(chromedp.CSS(`#send-reply`)),
		chromedp.WaitVisible(`//li[contains(@class,"from-note")]`),
		chromedp.SendKeys(chromedp.CSS(`#reply-text`), "Hello, Bea here: you are very likely out of scope."),
		chromedp.Click(chromedp.CSS(`#send-reply`)),
		chromedp.WaitVisible(`//li[contains(@class,"from-staff")]`),
	)
	if err != nil {
		t.Fatalf("staff side: %v", err)
	}
	if !strings.Contains(transcript, `<img src=x onerror=`) || !strings.Contains(transcript, "Does the CSRD apply to our company?") {
		t.Errorf("the transcript should show the conversation, markup as text:\n%s", transcript)
	}

	if err := chromedp.Do(person, botSays("Hello, Bea here: you are very likely out of scope.")); err != nil {
		t.Fatalf("the staff reply did not reach the chat: %v", err)
	}
	title, err1 := chromedp.Run(person, chromedp.Title())
	chat, err2 := chromedp.Run(person, chromedp.Text(chromedp.CSS(`#log`)))
	shot, err3 := chromedp.Run(person, chromedp.CaptureScreenshot())
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if title == "pwned" {
		t.Error("markup typed into the chat ran as HTML")
	}
	if strings.Contains(chat, "check the VSME") {
		t.Error("an internal note reached the person")
	}
	if dir := os.Getenv("CSRDESK_SCREENSHOTS"); dir != "" {
		os.WriteFile(filepath.Join(dir, "chat.png"), shot, 0o644)
	}
}

// TestSubscribePagesInABrowser subscribes through the public form in Chromium (its cookies, CSP and form posts),
// confirms from the link in the mail, then leaves from the unsubscribe link's page.
func TestSubscribePagesInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	addr, outbox := freeAddr(t), t.TempDir()
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr, "CSRDESK_OUTBOX_DIR", outbox)
	if _, _, err := runCmd(t, e, "lists", "create", "news", "--public", "--title", "Actualités et événements"); err != nil {
		t.Fatal(err)
	}
	startServe(t, e, addr)
	base := "http://" + addr
	page := browser(t)
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(page, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			body, _ := chromedp.Run(page, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("%s: %v; the page shows:\n%s", name, err, body)
		}
	}
	step("subscribe",
		chromedp.Navigate(base+"/subscribe?lang=fr"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), "Claire@Example.FR"),
		chromedp.Click(chromedp.CSS(`input[name=consent]`)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(`//h1[contains(., "Consultez votre boîte de réception")]`))

	files, _ := filepath.Glob(filepath.Join(outbox, "*.eml")) // mails outside campaigns sit at the top
	if len(files) != 1 {
		t.Fatalf("%d mails in the outbox, want the confirmation", len(files))
	}
	raw, _ := os.ReadFile(files[0])
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	link := regexp.MustCompile(`http://` + regexp.QuoteMeta(addr) + `/confirm/[A-Za-z0-9_.-]+`).Find(text)
	if link == nil {
		t.Fatalf("no confirmation link in:\n%s", text)
	}
	step("confirm",
		chromedp.Navigate(string(link)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(`//h1[contains(., "Votre abonnement est confirmé")]`))
	out, _, _ := runCmd(t, e, "subscribers", "export", "claire@example.fr")
	if !strings.Contains(out, `"status": "active"`) {
		t.Errorf("after confirming:\n%s", out)
	}
	var data struct{ Subscriber campaigns.Subscriber }
	if err := json.Unmarshal([]byte(out), &data); err != nil || data.Subscriber.ID == "" {
		t.Fatalf("export: %v\n%s", err, out)
	}

	token := campaigns.UnsubscribeToken([]byte(e("CSRDESK_SECRET")), &data.Subscriber)
	step("unsubscribe",
		chromedp.Navigate(base+"/unsubscribe/"+token),
		chromedp.Click(chromedp.CSS(`form[action^="/unsubscribe/"] button`)),
		chromedp.WaitVisible(`//h1[contains(., "Désabonnement confirmé")]`))
	if out, _, _ := runCmd(t, e, "subscribers", "export", "claire@example.fr"); !strings.Contains(out, `"status": "unsubscribed"`) || !strings.Contains(out, `"via": "link"`) {
		t.Errorf("after unsubscribing:\n%s", out)
	}
}
