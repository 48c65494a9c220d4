package telegram

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// FuzzWebhook posts arbitrary bodies to the webhook, with the right secret token, the fake Bot API and real
// Redis. Whatever arrives, the bot must not crash, and it answers 200 (handled or ignored) or 400 (not an
// update): a 500 makes Telegram deliver the same update again and again.
func FuzzWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"update_id":900001,"message":{"message_id":7,"from":{"id":5002,"is_bot":false,"first_name":"Ana","language_code":"es"},` +
		`"chat":{"id":5002,"first_name":"Ana","type":"private"},"date":1795766400,"text":"¿La CSRD se aplica a mi empresa?"}}`))
	f.Add([]byte(`{"update_id":900002,"callback_query":{"id":"77","from":{"id":5002,"is_bot":false,"first_name":"Ana"},` +
		`"message":{"message_id":8,"chat":{"id":5002,"type":"private"},"date":1795766400,"text":"..."},"chat_instance":"1","data":"h"}}`))

	fx := newFixture(f, Config{WebhookSecret: "s3cret"})
	handler := fx.bot.WebhookHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		ctx := context.Background()
		// A fresh database each time: the update id of a mutated update would otherwise be seen already, and the
		// chat's state (an open ticket, an awaited address) would steer every later update the same way.
		if err := fx.bot.rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/telegram/webhook", bytes.NewReader(body))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "s3cret")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Errorf("webhook answered %d %q, want 200 or 400", rec.Code, rec.Body.String())
		}
	})
}
