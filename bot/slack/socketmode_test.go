package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSocketMode feeds an event and a button press through a fake Socket Mode server: csrdesk opens the
// connection (apps.connections.open, then the WebSocket), acknowledges each envelope, and answers in the DM.
func TestSocketMode(t *testing.T) {
	f := newFixture(t) // the HTTP-mode fixture gives the engine and the fake Web API
	dm, _ := os.ReadFile("testdata/event_dm.json")
	press := `{"type":"block_actions","user":{"id":"UPERSON","name":"jo"},"channel":{"id":"DPERSON"},"container":{"type":"message","channel_id":"DPERSON"},"actions":[{"action_id":"csrdesk:0","block_id":"Xy1","value":"y:csrd-scope","type":"button","action_ts":"1"}]}`
	var mu sync.Mutex
	var acks []string
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	var ws *httptest.Server
	linkDone := make(chan struct{})
	ws = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "apps.connections.open") {
			// Socket Mode opens the connection with the app-level token.
			if r.Header.Get("Authorization") != "Bearer xapp-1-test" {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"ok":false,"error":"invalid_auth"}`))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(ws.URL, "http") + "/link"})
			return
		}
		if r.URL.Path != "/link" {
			f.api.ServeHTTP(w, r) // the rest of the Web API
			return
		}
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.WriteJSON(map[string]any{"type": "hello", "num_connections": 1, "connection_info": map[string]any{"app_id": "A1"}})
		envelopes := []map[string]any{
			{"type": "events_api", "envelope_id": "env-1", "payload": json.RawMessage(dm), "accepts_response_payload": false, "retry_attempt": 0},
			{"type": "events_api", "envelope_id": "env-2", "payload": json.RawMessage(dm), "accepts_response_payload": false, "retry_attempt": 1}, // a retry
			{"type": "interactive", "envelope_id": "env-3", "payload": json.RawMessage(press), "accepts_response_payload": false},
		}
		for _, env := range envelopes {
			conn.WriteJSON(env)
			var ack struct {
				EnvelopeID string `json:"envelope_id"`
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := conn.ReadJSON(&ack); err != nil {
				t.Errorf("no acknowledgement: %v", err)
				return
			}
			mu.Lock()
			acks = append(acks, ack.EnvelopeID)
			mu.Unlock()
		}
		close(linkDone)
		<-r.Context().Done()
	}))
	defer ws.Close()

	s, err := New(Config{BotToken: "xoxb-1", AppToken: "xapp-1-test", APIURL: ws.URL + "/api/"}, f.engine, f.slack.matcher, f.slack.rdb, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- s.Run(ctx) }()
	defer func() {
		// Run returns once ctx ends, the connection and the envelopes in hand done, so Redis can close after.
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("Run still running 5 s after ctx ended")
		}
	}()
	select {
	case <-linkDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the envelopes were not acknowledged")
	}
	waitFor(t, "the answer and the thanks in the DM", func() bool { return len(f.api.postsTo("DPERSON")) == 2 })
	time.Sleep(200 * time.Millisecond)
	// The press is sent before the answer is out, so the two may come in either order.
	answers, thanks := 0, 0
	for _, p := range f.api.postsTo("DPERSON") {
		switch {
		case strings.Contains(p.Get("blocks"), "450 million"):
			answers++
		case strings.Contains(p.Get("text"), "Glad it helped"):
			thanks++
		}
	}
	if answers != 1 || thanks != 1 {
		t.Errorf("in the DM: %d answers (the event came twice), %d thanks; want 1 and 1", answers, thanks)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(acks, ",") != "env-1,env-2,env-3" {
		t.Errorf("acknowledged %v", acks)
	}
}
