package telegram

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// BenchmarkTelegram measures how many messages a second one process answers, from updates fetched with
// getUpdates to sendMessage on a fake Bot API, with 500 chats asking in turn and Telegram's pacing of one
// message a second per chat. "telegram-limits" keeps Telegram's overall cap of 30 a second (the real ceiling);
// "pipeline" lifts it to show what the process itself can do. per-chat-violations counts replies to one chat
// closer than the pacing allows (it must be 0).
func BenchmarkTelegram(b *testing.B) {
	b.Run("telegram-limits", func(b *testing.B) { benchTelegram(b, redis_rate.Limit{Rate: 30, Burst: 30, Period: time.Second}) })
	b.Run("pipeline", func(b *testing.B) { benchTelegram(b, redis_rate.PerSecond(100000)) })
}

func benchTelegram(b *testing.B, overall redis_rate.Limit) {
	const chats = 500
	questions := []string{"does the csrd apply to us", "wie berechnen wir scope 1 und 2", "que es el vsme", "iso 14001 o emas"}
	f := newFixture(b, Config{PerChat: redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Second}, Overall: overall})
	for i := range b.N {
		chat := 10000 + i%chats
		u := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"U"},"chat":{"id":%d,"type":"private"},"date":1795766400,"text":%q}}`,
			i+1, i+1, chat, chat, questions[i%len(questions)])
		f.api.updates = append(f.api.updates, []byte(u))
	}
	b.ResetTimer()
	start := time.Now()
	f.run(b)
	for {
		f.api.mu.Lock()
		n := len(f.api.sent)
		f.api.mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	last := map[string]time.Time{}
	violations := 0
	f.api.mu.Lock()
	for i, v := range f.api.sent {
		chat := v.Get("chat_id")
		if t, ok := last[chat]; ok && f.api.sentAt[i].Sub(t) < 900*time.Millisecond {
			violations++
		}
		last[chat] = f.api.sentAt[i]
	}
	f.api.mu.Unlock()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(violations), "per-chat-violations")
}
