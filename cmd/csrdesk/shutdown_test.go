package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startServeProcess starts csrdesk serve as a process on Redis database db, with the environment extra, and
// waits until it answers. exited gets the result of its Wait.
func startServeProcess(t *testing.T, bin string, db int, extra ...string) (base string, cmd *exec.Cmd, logs *syncBuffer, exited <-chan error) {
	t.Helper()
	addr := freeAddr(t)
	cmd = exec.Command(bin, "serve")
	cmd.Env = append(append(os.Environ(), "CSRDESK_SECRET=shutdown test", "CSRDESK_REDIS_URL="+redisSrv.URL(db), "CSRDESK_HTTP_ADDR="+addr,
		"CSRDESK_OUTBOX_DIR="+t.TempDir(), "CSRDESK_OFFICE_HOURS=always", "CSRDESK_RATE_PER_MIN=0", "CSRDESK_LOG_LEVEL=info"), extra...)
	logs = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() }) // when a test gave up before the process exited
	waitHealthy(t, addr, logs.String)
	return "http://" + addr, cmd, logs, done
}

// shutdownLoad is what sigtermUnderLoad saw.
type shutdownLoad struct {
	requests int           // sent in all
	accepted int           // answered 2xx
	refused  int           // never taken: connection refused, or closed before the server read the request
	inFlight int           // sent before SIGTERM and answered after it
	lost     int           // taken but not answered 2xx, or answered 2xx but not stored and replied to
	dups     int           // Telegram updates replied to more than once
	streams  int           // event streams open at SIGTERM; each must end before the process exits
	exit     time.Duration // from SIGTERM to the process's exit
}

// loadRequest is one message sent to csrdesk serve: a web chat message, or a Telegram update by webhook.
type loadRequest struct {
	telegram   bool
	chat, text string
	start, end time.Time
	status     int   // 0 when err is set
	err        error // a transport error
}

// sigtermUnderLoad starts a real csrdesk serve (web chat, and Telegram by webhook on a fake Bot API), has
// clients send it messages as fast as it answers, half to the web chat and half as Telegram updates, with
// event streams open, sends it SIGTERM after warm, and checks the stop: exit status 0 within timeout, every
// message it took stored and answered, the streams ended, and neither errors nor "redis: client is closed"
// in its log. Clients stop once the server refuses connections.
func sigtermUnderLoad(t *testing.T, bin string, clients, streams int, warm, timeout time.Duration) shutdownLoad {
	t.Helper()
	pl := &platforms{}
	fake := httptest.NewServer(pl)
	defer fake.Close()
	db := redisSrv.DB(t)
	base, cmd, logs, exited := startServeProcess(t, bin, db, "CSRDESK_SHUTDOWN_TIMEOUT="+timeout.String(),
		"TELEGRAM_BOT_TOKEN=1:x", "TELEGRAM_API_ENDPOINT="+fake.URL+"/tg/bot%s/%s", "TELEGRAM_RATE=5000",
		"TELEGRAM_WEBHOOK_URL=https://bot.example/telegram/webhook", "TELEGRAM_WEBHOOK_SECRET=hook-secret")
	defer func() {
		if t.Failed() {
			t.Logf("serve log:\n%s", logTail(logs.String(), 4000))
		}
	}()

	// Event streams: they must end when the server shuts down, not hold it up.
	var open, ended atomic.Int64
	for range streams {
		resp, err := http.Get(base + "/api/chat/events?chat=" + newChat())
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("event stream: %v %v", err, resp)
		}
		open.Add(1)
		go func() {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ended.Add(1)
		}()
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 2 * timeout}
	var mu sync.Mutex
	var sent []loadRequest
	var updateID atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				r := loadRequest{telegram: c%2 == 1, text: fmt.Sprintf("%s (client %d, message %d)", shutdownQuestions[i%len(shutdownQuestions)], c, i)}
				var req *http.Request
				if r.telegram {
					id := updateID.Add(1)
					r.chat = strconv.FormatInt(1_000_000+id, 10)
					body := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":1,"from":{"id":%s,"is_bot":false,"first_name":"U","language_code":"en"},"chat":{"id":%s,"type":"private"},"date":1795766400,"text":%q}}`,
						id, r.chat, r.chat, r.text)
					req, _ = http.NewRequest("POST", base+"/telegram/webhook", strings.NewReader(body))
					req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "hook-secret")
				} else {
					r.chat = newChat()
					body, _ := json.Marshal(map[string]string{"chat": r.chat, "text": r.text, "lang": "en"})
					req, _ = http.NewRequest("POST", base+"/api/chat/messages", strings.NewReader(string(body)))
				}
				req.Header.Set("Content-Type", "application/json")
				r.start = time.Now()
				resp, err := client.Do(req)
				r.end = time.Now()
				if err != nil {
					r.err = err
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status = resp.StatusCode
				}
				mu.Lock()
				sent = append(sent, r)
				mu.Unlock()
				var op *net.OpError
				if errors.As(err, &op) && op.Op == "dial" {
					return // the listener is closed: the server takes no more
				}
			}
		})
	}
	time.Sleep(warm)
	sigterm := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var out shutdownLoad
	var err error
	select {
	case err = <-exited:
		out.exit = time.Since(sigterm)
	case <-time.After(timeout + 10*time.Second):
		cmd.Process.Kill()
		err = <-exited
		out.exit = time.Since(sigterm)
		t.Errorf("serve still running %s after SIGTERM (deadline %s): killed", out.exit, timeout)
	}
	wg.Wait()
	if err != nil {
		t.Errorf("serve exited with %v, want status 0", err)
	}
	if out.exit > timeout {
		t.Errorf("serve took %s to exit after SIGTERM, over its deadline %s", out.exit, timeout)
	}
	out.streams = int(open.Load())
	for deadline := time.Now().Add(time.Second); ended.Load() < open.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the readers see the end of a stream just after the server sends it
	}
	if n := ended.Load(); n != open.Load() {
		t.Errorf("%d of %d event streams still open after the process exited", open.Load()-n, open.Load())
	}
	log := logs.String()
	if strings.Contains(log, "client is closed") {
		t.Errorf("Redis was closed under a running part:\n%s", grepLines(log, "client is closed"))
	}
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", grepLines(log, "level=ERROR"))
	}
	if !strings.Contains(log, `msg=stopped`) {
		t.Errorf("no \"stopped\" line in the log")
	}

	// What was taken must be stored and answered: a web chat message with the bot's reply in its chat's
	// stream, a Telegram update with its reply sent or queued in the outbox.
	rc := redis.NewClient(&redis.Options{Addr: redisSrv.Addr, DB: db})
	defer rc.Close()
	replies := map[string]int{} // Telegram chat -> replies sent or queued
	tg, _ := pl.sent()
	for _, m := range tg {
		replies[m.Get("chat_id")]++
	}
	queued, qerr := rc.XRange(context.Background(), "csrdesk:outbox:telegram", "-", "+").Result()
	if qerr != nil {
		t.Fatal(qerr)
	}
	for _, m := range queued {
		replies[fmt.Sprint(m.Values["chat"])]++
	}
	handled := func(r loadRequest) (stored, answered bool) {
		if r.telegram {
			n := replies[r.chat]
			return n > 0, n > 0
		}
		items, err := rc.XRange(context.Background(), "csrdesk:web:"+r.chat, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			var v webItem
			json.Unmarshal([]byte(fmt.Sprint(it.Values["m"])), &v)
			stored = stored || (v.From == "user" && v.Text == r.text)
			answered = answered || v.From == "bot"
		}
		return stored, answered
	}
	shown := 0
	for _, r := range sent {
		out.requests++
		if r.start.Before(sigterm) && r.end.After(sigterm) {
			out.inFlight++
		}
		stored, answered := handled(r)
		what := ""
		switch {
		case r.status >= 200 && r.status < 300:
			out.accepted++
			if !stored || !answered {
				what = fmt.Sprintf("answered %d, but stored %v and replied to %v", r.status, stored, answered)
			}
		case r.status != 0:
			what = fmt.Sprintf("refused with %d", r.status)
		case stored:
			what = fmt.Sprintf("stored, but the client got %v", r.err)
		default:
			out.refused++
		}
		if r.telegram && replies[r.chat] > 1 {
			out.dups += replies[r.chat] - 1
		}
		if what != "" {
			out.lost++
			if shown++; shown <= 10 {
				t.Errorf("lost: %s %s sent %s before SIGTERM: %s", map[bool]string{true: "Telegram update", false: "web chat message"}[r.telegram],
					r.chat, sigterm.Sub(r.start).Round(time.Millisecond), what)
			}
		}
	}
	t.Logf("SIGTERM under load: %d requests, %d accepted, %d in flight at SIGTERM, %d refused after it, %d lost, %d duplicated; %d event streams ended; exit in %s",
		out.requests, out.accepted, out.inFlight, out.refused, out.lost, out.dups, out.streams, out.exit.Round(time.Millisecond))
	if out.inFlight == 0 {
		t.Errorf("no request was in flight at SIGTERM: the test proved nothing")
	}
	return out
}

// shutdownQuestions are what the clients ask: questions the knowledge base answers.
var shutdownQuestions = [...]string{"does the CSRD apply to our company?", "what is CBAM?", "what is the EU taxonomy?", "what is ISO 26000?"}

// webItem is a web chat message as bot/web stores it in the chat's stream.
type webItem struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// newChat returns a fresh web chat id, as POST /api/chat/session makes them.
func newChat() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return logTail(strings.Join(out, "\n"), 3000)
}

// TestServeSIGTERM sends SIGTERM to a real csrdesk serve. Under load, with web chat messages and Telegram
// updates in flight: every one it took is stored and answered, it exits 0 well within its deadline, the event
// streams end instead of holding it up, and Redis is closed only after everything that uses it. With a request
// that does not finish (its body never comes): the process gives up on it at the deadline, says so, and exits 1.
func TestServeSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and signals a process")
	}
	bin := buildBinary(t)
	t.Run("UnderLoad", func(t *testing.T) { sigtermUnderLoad(t, bin, 16, 4, 500*time.Millisecond, 10*time.Second) })
	t.Run("Deadline", func(t *testing.T) {
		const timeout = time.Second
		base, cmd, logs, exited := startServeProcess(t, bin, redisSrv.DB(t), "CSRDESK_SHUTDOWN_TIMEOUT="+timeout.String())
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "POST /api/chat/messages HTTP/1.1\r\nHost: csrdesk\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"chat\":")
		time.Sleep(200 * time.Millisecond) // the handler is waiting for the rest of the body
		sigterm := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-exited:
		case <-time.After(timeout + 10*time.Second):
			t.Fatalf("serve still running %s after SIGTERM, with a deadline of %s", time.Since(sigterm), timeout)
		}
		took := time.Since(sigterm)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("serve exited with %v, want status 1: a stop that gave up on a request failed", err)
		}
		if took < timeout || took > timeout+3*time.Second {
			t.Errorf("serve exited %s after SIGTERM, want just after its deadline %s", took.Round(time.Millisecond), timeout)
		}
		log := logs.String()
		// Cut off (the usual case), or abandoned if the machine is too busy for it to say so within the grace.
		cut := strings.Contains(log, "HTTP requests still in flight at the deadline are cut off") && strings.Contains(log, "requests=1")
		if !cut && !strings.Contains(log, `part="http drain"`) || strings.Contains(log, "client is closed") {
			t.Errorf("log:\n%s", logTail(log, 3000))
		}
		t.Logf("a request that never finished: exit status 1 %s after SIGTERM (deadline %s)", took.Round(time.Millisecond), timeout)
	})
}
