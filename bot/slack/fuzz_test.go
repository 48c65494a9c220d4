package slack

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/slack-go/slack/slackevents"

	"csrdesk/bot"
	"csrdesk/internal/rdb"
)

// fuzzCardTS is the staff card of the ticket a fuzz fixture opens: thread replies and card buttons name it.
const fuzzCardTS = "1795766400.000001"

// newFuzzFixture is the HTTP-mode fixture with ticket 1 open and its card in the staff channel, so that thread
// replies and Claim/Resolve reach the engine.
func newFuzzFixture(f *testing.F) *fixture {
	fx := newFixture(f)
	ctx := context.Background()
	fx.engine.Handle(ctx, bot.Message{Channel: "test", Chat: "c1", User: "u1", Name: "Ada", Text: "Do we need CBAM reports for castings from India?"})
	fx.engine.Handle(ctx, bot.Message{Channel: "test", Chat: "c1", User: "u1", Name: "Ada", Text: "/human"})
	waitFor(f, "the ticket card", func() bool { return len(fx.api.postsTo("CSTAFF")) == 1 })
	return fx
}

// serveSigned passes body to h as Slack sends it: signed with the signing secret, timestamped now.
func serveSigned(h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	req := httptest.NewRequest("POST", "/slack", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// FuzzEvents posts arbitrary, correctly signed bodies to the Events API handler. Whatever arrives, the bot must
// not crash, and it answers 200 (handled or ignored) or 400 (not an event): anything else makes Slack send the
// same event again.
func FuzzEvents(f *testing.F) {
	for _, name := range []string{"event_dm.json", "event_mention.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(threadReply(f, "Ev1", fuzzCardTS, "Yes: castings are in scope.")))
	f.Add([]byte(threadReply(f, "Ev2", fuzzCardTS, "note: check their import volume")))
	f.Add([]byte(`{"token":"unused","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`))

	fx := newFuzzFixture(f)
	handler := fx.slack.EventsHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serveSigned(handler, "application/json", body)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Errorf("events handler answered %d %q, want 200 or 400", rec.Code, rec.Body.String())
		}
		// Forget the event id, so that the next input with the same id is handled rather than skipped as seen.
		if ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken()); err == nil {
			if outer, _ := ev.Data.(*slackevents.EventsAPICallbackEvent); outer != nil && outer.EventID != "" {
				fx.slack.rdb.Del(context.Background(), rdb.SlackEventPrefix+outer.EventID)
			}
		}
	})
}

// FuzzInteractions posts arbitrary interaction payloads (the form field "payload" that Slack posts when a button
// is pressed), correctly signed, to the interactions handler. The bot must not crash, and it answers 200 or 400.
func FuzzInteractions(f *testing.F) {
	claim, err := os.ReadFile("testdata/interaction_claim.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, action := range [][2]string{{"ticket:claim", "1"}, {"ticket:resolve", "1"}} {
		f.Add([]byte(fmt.Sprintf(string(claim), fuzzCardTS, fuzzCardTS, action[0], action[1])))
	}
	f.Add([]byte(`{"type":"block_actions","user":{"id":"UPERSON","name":"jo"},"channel":{"id":"DPERSON"},"container":{"type":"message","channel_id":"DPERSON"},` +
		`"actions":[{"action_id":"csrdesk:0","block_id":"Xy1","value":"y:csrd-scope","type":"button","action_ts":"1795766800.1"}]}`))

	fx := newFuzzFixture(f)
	handler := fx.slack.InteractionsHandler()
	f.Fuzz(func(t *testing.T, payload []byte) {
		rec := serveSigned(handler, "application/x-www-form-urlencoded", []byte("payload="+url.QueryEscape(string(payload))))
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Errorf("interactions handler answered %d %q, want 200 or 400", rec.Code, rec.Body.String())
		}
	})
}
