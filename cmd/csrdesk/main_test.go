package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"csrdesk/faq"
	"csrdesk/internal/rdb/rdbtest"
)

var redisSrv *rdbtest.Server

func TestMain(m *testing.M) { os.Exit(rdbtest.Main(m, &redisSrv)) }

func env(kv ...string) func(string) string {
	m := map[string]string{"CSRDESK_SECRET": "test secret, not for production"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// runCmd runs csrdesk with args and returns its output and error.
func runCmd(t *testing.T, getenv func(string) string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, getenv, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// copyKB copies the embedded knowledge base into a temporary folder for a test to edit.
func copyKB(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, faq.Embedded()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFaqCheck(t *testing.T) {
	out, _, err := runCmd(t, env(), "faq", "check")
	if err != nil {
		t.Fatalf("faq check on the shipped base: %v\n%s", err, out)
	}
	if !strings.Contains(out, "(embedded): ok,") {
		t.Errorf("output: %s", out)
	}

	dir := copyKB(t)
	bad := filepath.Join(dir, "entries", "csrd-scope.yaml")
	data, _ := os.ReadFile(bad)
	os.WriteFile(bad, bytes.Replace(data, []byte("related: [omnibus"), []byte("related: [omnibuss"), 1), 0o644)
	relatedLine := 1 + bytes.Count(data[:bytes.Index(data, []byte("related: [omnibus"))], []byte("\n"))
	os.WriteFile(filepath.Join(dir, "entries", "broken.yaml"), []byte("topic: eu-law\nen: [unclosed\n"), 0o644)
	out, _, err = runCmd(t, env(), "faq", "check", dir)
	if exitStatus(err) != 1 {
		t.Fatalf("faq check on a broken base: err %v, want exit status 1", err)
	}
	for _, want := range []string{
		fmt.Sprintf("%s:%d: related entry \"omnibuss\" does not exist", bad, relatedLine),
		filepath.Join(dir, "entries", "broken.yaml") + ":2: malformed YAML",
		"2 problem(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFaqAskJSON(t *testing.T) {
	tests := []struct {
		args     []string
		decision string
		lang     string
		entry    string
	}{
		{[]string{"--json", "does the CSRD apply to our company?"}, "answer", "en", "csrd-scope"},
		{[]string{"gilt die CSRD für unser Unternehmen?", "--json"}, "answer", "de", "csrd-scope"},
		{[]string{"--lang", "it", "--json", "passami un operatore"}, "escalate", "it", ""},
		{[]string{"--json", "asdf qwer zxcv"}, "escalate", "en", ""},
	}
	for _, tt := range tests {
		t.Run(join(tt.args), func(t *testing.T) {
			out, _, err := runCmd(t, env(), append([]string{"faq", "ask"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			for _, k := range []string{"decision", "lang", "entry", "score", "suggestions"} {
				if _, ok := got[k]; !ok {
					t.Errorf("no %q in %s", k, out)
				}
			}
			if got["decision"] != tt.decision || got["lang"] != tt.lang {
				t.Errorf("decision %v lang %v, want %s %s", got["decision"], got["lang"], tt.decision, tt.lang)
			}
			entry, _ := got["entry"].(map[string]any)
			if tt.entry == "" && got["entry"] != nil {
				t.Errorf("entry = %v, want null", got["entry"])
			}
			if tt.entry != "" && (entry == nil || entry["id"] != tt.entry || entry["answer"] == "" || entry["question"] == "") {
				t.Errorf("entry = %v, want %s with question and answer", got["entry"], tt.entry)
			}
		})
	}
}

func TestFaqAskUsage(t *testing.T) {
	for _, args := range [][]string{{"faq", "ask"}, {"faq", "ask", "--lang", "pt", "hola"}, {"faq", "nope"}, {"nope"}} {
		if _, _, err := runCmd(t, env(), args...); exitStatus(err) != 2 {
			t.Errorf("%v: err %v, want a usage error (exit status 2)", args, err)
		}
	}
	if _, _, err := runCmd(t, env("CSRDESK_FAQ_CONFIDENCE", "high"), "faq", "check"); err == nil || !strings.Contains(err.Error(), "CSRDESK_FAQ_CONFIDENCE") {
		t.Errorf("bad threshold: err %v, want one naming CSRDESK_FAQ_CONFIDENCE", err)
	}
	if _, _, err := runCmd(t, env("CSRDESK_FAQ_ANSWER", "0.26"), "faq", "check"); err == nil || !strings.Contains(err.Error(), "CSRDESK_FAQ_ANSWER is gone") {
		t.Errorf("the old score threshold: err %v, want one saying it is gone", err)
	}
	if _, _, err := runCmd(t, env("CSRDESK_DEFAULT_LANG", "pt"), "faq", "check"); err == nil || !strings.Contains(err.Error(), `CSRDESK_DEFAULT_LANG="pt"`) {
		t.Errorf("bad default language: err %v, want one naming CSRDESK_DEFAULT_LANG", err)
	}
	out, _, err := runCmd(t, env("CSRDESK_DEFAULT_LANG", "it"), "faq", "ask", "--json", "csrd?")
	if err != nil || !strings.Contains(out, `"lang":"it"`) {
		t.Errorf("faq ask csrd? with CSRDESK_DEFAULT_LANG=it: %v %s", err, out)
	}
}

// TestFaqAskAnything: small talk, gibberish, a megabyte and binary input get a sensible decision, never a panic.
func TestFaqAskAnything(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	binary := make([]byte, 1<<20)
	for i := range binary {
		binary[i] = byte(rng.IntN(256))
	}
	files := map[string][]byte{
		"1mb":    bytes.Repeat([]byte("what does the csrd mean for a small supplier of machine tool parts "), 1<<20/68),
		"binary": binary,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		args  []string
		check func(answerJSON) bool
	}{
		{[]string{"thanks"}, func(a answerJSON) bool { return a.Entry != nil && a.Entry.ID == "smalltalk-thanks" }},
		{[]string{"hi"}, func(a answerJSON) bool { return a.Entry != nil && a.Entry.ID == "smalltalk-hello" }},
		{[]string{"asdkjh qweoiu zxcmnb"}, func(a answerJSON) bool { return a.Decision == faq.Escalate && a.Reason == faq.ReasonNoMatch }},
		{[]string{"--file", filepath.Join(dir, "1mb")}, func(a answerJSON) bool { return a.Entry != nil && a.Entry.ID == "csrd-scope" }},
		{[]string{"--file", filepath.Join(dir, "binary")}, func(a answerJSON) bool {
			return a.Decision != faq.Answer || a.Entry != nil && a.Entry.Kind != faq.KindAnswer
		}},
	} {
		out, _, err := runCmd(t, env(), append([]string{"faq", "ask", "--json"}, tt.args...)...)
		var a answerJSON
		if err == nil {
			err = json.Unmarshal([]byte(out), &a)
		}
		if err != nil || !tt.check(a) {
			t.Errorf("faq ask %v: %v %s", tt.args[len(tt.args)-1], err, out)
		}
	}
	if _, _, err := runCmd(t, env(), "faq", "ask", "--file", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("faq ask --file missing: %v", err)
	}
}

func TestFaqEval(t *testing.T) {
	out, _, err := runCmd(t, env(), "faq", "eval", "../../faq/testdata/eval.tsv")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lang    n  answered [95% CI]         suggested                 wrong                  escalated", "\nde ", "confidently wrong, of all",
		"reply in the question's language:", "out of scope not answered:", "small talk replied to:", "requests for a person escalated:", "other misses"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, env(), "faq", "eval", "--calibrate", "../../faq/testdata/blind.tsv")
	if err != nil || !strings.Contains(out, "calibrated thresholds") || !strings.Contains(out, "answer at confidence 0.") {
		t.Errorf("faq eval --calibrate: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.tsv")
	os.WriteFile(bad, []byte("lang\texpect\tquestion\nen\tno-such-entry\twhat?\nxx\tnone\thello\n"), 0o644)
	_, _, err = runCmd(t, env(), "faq", "eval", bad)
	if err == nil || !strings.Contains(err.Error(), bad+`:2: no entry "no-such-entry"`) || !strings.Contains(err.Error(), bad+`:3: unknown language "xx"`) {
		t.Errorf("bad eval file: err %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().String()
}

// listen listens on a free local port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startServe runs csrdesk serve until the test ends and waits until it answers.
func startServe(t *testing.T, getenv func(string) string, addr string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenv, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitHealthy(t, addr, logs.String)
	return logs
}

func TestServe(t *testing.T) {
	addr := freeAddr(t)
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr, "CSRDESK_OUTBOX_DIR", t.TempDir())
	startServe(t, e, addr)

	get := func(path string) (int, answerJSON) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answerJSON
		json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a
	}
	code, a := get("/api/faq/ask?q=" + url.QueryEscape("¿Se aplica la CSRD a nuestra empresa?"))
	if code != 200 || a.Decision != faq.Answer || a.Entry == nil || a.Entry.ID != "csrd-scope" || a.Lang != "es" {
		t.Errorf("ask: %d %+v", code, a)
	}
	// A question in the web chat shows in the metrics.
	resp, err := http.Post("http://"+addr+"/api/chat/session", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var session struct{ Chat string }
	json.NewDecoder(resp.Body).Decode(&session)
	resp.Body.Close()
	resp, err = http.Post("http://"+addr+"/api/chat/messages", "application/json",
		strings.NewReader(`{"chat":"`+session.Chat+`","text":"what is the VSME standard?"}`))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("chat message: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	// A campaign waiting for its time shows too.
	importPeople(t, e, 3)
	body := filepath.Join(t.TempDir(), "later.md")
	os.WriteFile(body, []byte("Hello {{.Subscriber.Name}}"), 0o644)
	if out, _, err := runCmd(t, e, "campaign", "create", "--name", "later", "--subject", "S", "--body-file", body, "--list", "all", "--send-at", "2099-01-01 09:00"); err != nil || out != "1\n" {
		t.Fatalf("campaign create: %v %q", err, out)
	}
	if _, _, err := runCmd(t, e, "campaign", "start", "1"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`csrdesk_questions_total{decision="answer",lang="en"} 1`, "csrdesk_ticket_first_reply_seconds_count 0", "go_goroutines", "csrdesk_redis_up 1",
		`csrdesk_campaign_state{campaign="1",state="scheduled"} 1`, `csrdesk_campaign_recipients{campaign="1",state="sent"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// /subscribe in the web chat, then the address: the confirmation mail goes out, and the consent names the chat.
	runCmd(t, e, "lists", "create", "news", "--public")
	for _, text := range []string{"/subscribe", "lea@example.fr"} {
		resp, err = http.Post("http://"+addr+"/api/chat/messages", "application/json", strings.NewReader(`{"chat":"`+session.Chat+`","text":"`+text+`"}`))
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("chat message %q: %v %v", text, err, resp.Status)
		}
		resp.Body.Close()
	}
	var mails []string
	for deadline := time.Now().Add(10 * time.Second); len(mails) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mails, _ = filepath.Glob(filepath.Join(e("CSRDESK_OUTBOX_DIR"), "*-lea@example.fr.eml"))
	}
	export, _, _ := runCmd(t, e, "subscribers", "export", "lea@example.fr")
	if !strings.Contains(export, `"via": "chat:web"`) || !strings.Contains(export, `"status": "unconfirmed"`) || len(mails) != 1 {
		t.Fatalf("subscribe from the web chat: %d confirmation mails; export:\n%s", len(mails), export)
	}
	if mail, _ := os.ReadFile(mails[0]); !strings.Contains(strings.ReplaceAll(string(mail), "=\r\n", ""), "/confirm/") {
		t.Errorf("the confirmation mail has no confirmation link:\n%s", mail)
	}
	if code, _ := get("/api/faq/ask?lang=pt&q=ola"); code != 400 {
		t.Errorf("bad lang: status %d, want 400", code)
	}
	if code, _ := get("/api/faq/ask?q=" + strings.Repeat("x", 5000)); code != 400 {
		t.Errorf("huge question: status %d, want 400", code)
	}
}

func TestServeReloadsKnowledgeBase(t *testing.T) {
	dir := copyKB(t)
	addr := freeAddr(t)
	logs := startServe(t, env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr, "CSRDESK_FAQ_DIR", dir), addr)
	ask := func(q string) answerJSON {
		resp, err := http.Get("http://" + addr + "/api/faq/ask?q=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answerJSON
		json.NewDecoder(resp.Body).Decode(&a)
		return a
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const q = "what is the zorblax widget procedure"
	if a := ask(q); a.Decision == faq.Answer {
		t.Fatalf("answered %q before the entry exists: %+v", q, a)
	}

	// A valid new entry is picked up without a restart.
	entry := regexp.MustCompile(`(?m)^related: .*\n`).ReplaceAllString(string(mustRead(t, filepath.Join(dir, "entries", "csrd-scope.yaml"))), "")
	entry = regexp.MustCompile(`(?m)^(en:\n  questions:\n    - ).*$`).ReplaceAllString(entry, "${1}What is the zorblax widget procedure?")
	os.WriteFile(filepath.Join(dir, "entries", "zorblax.yaml"), []byte(entry), 0o644)
	waitFor("the new entry", func() bool { a := ask(q); return a.Entry != nil && a.Entry.ID == "zorblax" })

	// An invalid edit is logged with file:line and the last good base keeps serving.
	os.WriteFile(filepath.Join(dir, "entries", "zorblax.yaml"), []byte("topic: eu-law\nen: [\n"), 0o644)
	waitFor("the problem in the log", func() bool { return strings.Contains(logs.String(), "entries/zorblax.yaml:2") })
	if a := ask(q); a.Entry == nil || a.Entry.ID != "zorblax" {
		t.Errorf("after an invalid edit: %+v, want the last good base answering with zorblax", a)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestServeWithoutRedis(t *testing.T) {
	_, _, err := runCmd(t, env("CSRDESK_REDIS_URL", "redis://127.0.0.1:1/0", "CSRDESK_HTTP_ADDR", freeAddr(t)), "serve")
	if err == nil || !strings.Contains(err.Error(), "redis at redis://127.0.0.1:1/0") {
		t.Errorf("serve without Redis: err %v", err)
	}
	var ue usageError
	if errors.As(err, &ue) {
		t.Errorf("a missing Redis is not a usage error")
	}
}

// syncBuffer is a bytes.Buffer that the server's logger and the test can use at once.
type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// TestServeWithTelegram checks the wiring: with TELEGRAM_BOT_TOKEN set, serve polls the (fake) Bot API and
// answers an update there.
func TestServeWithTelegram(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	served := false
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		switch path.Base(r.URL.Path) {
		case "getMe":
			io.WriteString(w, `{"ok":true,"result":{"id":42,"is_bot":true,"first_name":"CSR desk","username":"csrdesk_bot"}}`)
		case "getUpdates":
			if served {
				time.Sleep(100 * time.Millisecond)
				io.WriteString(w, `{"ok":true,"result":[]}`)
				return
			}
			served = true
			io.WriteString(w, `{"ok":true,"result":[{"update_id":1,"message":{"message_id":1,"from":{"id":7,"is_bot":false,"first_name":"Ana","language_code":"es"},"chat":{"id":7,"type":"private"},"date":1795766400,"text":"¿Se aplica la CSRD a nuestra empresa?"}}]}`)
		case "sendMessage":
			sent = append(sent, r.Form.Get("text"))
			io.WriteString(w, `{"ok":true,"result":{"message_id":2,"date":1795766401,"chat":{"id":7,"type":"private"}}}`)
		default:
			io.WriteString(w, `{"ok":true,"result":true}`)
		}
	}))
	defer api.Close()
	addr := freeAddr(t)
	startServe(t, env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)), "CSRDESK_HTTP_ADDR", addr,
		"TELEGRAM_BOT_TOKEN", "1:x", "TELEGRAM_API_ENDPOINT", api.URL+"/bot%s/%s"), addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(sent)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 || !strings.Contains(sent[0], "1.000 empleados") {
		t.Errorf("sent to Telegram: %q", sent)
	}
}

func TestListsAndSubscribersCommands(t *testing.T) {
	e := env("CSRDESK_REDIS_URL", redisSrv.URL(redisSrv.DB(t)))
	if out, _, err := runCmd(t, e, "lists", "create", "events"); err != nil || out != "list events created\n" {
		t.Fatalf("lists create: %q %v", out, err)
	}
	if _, _, err := runCmd(t, e, "lists", "create", "events"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("creating a list twice: %v", err)
	}
	file := filepath.Join(t.TempDir(), "people.csv")
	os.WriteFile(file, []byte("email,name,company,sector\nanna@example.it,Anna,Rossi SpA,tools\nnope,Bad,,\n"), 0o644)
	out, _, err := runCmd(t, e, "subscribers", "import", file, "--list", "events")
	if exitStatus(err) != 1 || !strings.Contains(out, file+`:3: "nope" is not an email address: not imported`) || !strings.Contains(out, "events: 1 added, 0 updated, 1 not imported") {
		t.Errorf("import: %v\n%s", err, out)
	}
	if out, _, _ := runCmd(t, e, "lists"); !strings.Contains(out, "events  1") {
		t.Errorf("lists:\n%s", out)
	}
	out, _, err = runCmd(t, e, "subscribers", "export", "--list", "events")
	if err != nil || out != "email,name,company,country,language,role,status,sector\nanna@example.it,Anna,Rossi SpA,,,,unconfirmed,tools\n" {
		t.Errorf("export: %v\n%q", err, out)
	}
	if _, _, err := runCmd(t, e, "subscribers", "import", file); exitStatus(err) != 2 {
		t.Errorf("import without --list: %v", err)
	}
	if _, _, err := runCmd(t, e, "subscribers", "export", "--list", "nope"); err == nil || !strings.Contains(err.Error(), `list "nope": not found`) {
		t.Errorf("export of a missing list: %v", err)
	}
}
