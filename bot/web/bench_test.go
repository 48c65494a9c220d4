package web

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWebChat measures question-to-answer latency through the web chat with 200 chats open at once: the
// time from POSTing a question to its answer arriving on the chat's event stream, over a real Redis. In
// "saturated" every chat asks again as soon as it has its answer (the machine's throughput); in "1-per-second"
// each chat asks once a second, 200 questions a second in all (latency under a busy but not overloaded desk).
func BenchmarkWebChat(b *testing.B) {
	b.Run("saturated", func(b *testing.B) { benchWebChat(b, 0) })
	b.Run("1-per-second", func(b *testing.B) { benchWebChat(b, time.Second) })
}

func benchWebChat(b *testing.B, every time.Duration) {
	const chats = 200
	f := newFixture(b, Config{NewChatsPerMin: -1})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * chats, MaxConnsPerHost: 0}}
	questions := []string{
		"does the csrd apply to a supplier with 80 staff?",
		"wie berechnen wir scope 1 und 2",
		"cosa prevede il regolamento macchine 2023/1230",
		"comment repondre au questionnaire rse d'un client",
		"que es el vsme",
		"how to cut accidents in the workshop",
	}
	ids := make([]string, chats)
	streams := make([]<-chan event, chats)
	for i := range chats {
		ids[i] = f.session(b)
		streams[i] = f.stream(b, ids[i], "")
	}
	// Chats start spread over the first interval, as people do.
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, b.N)
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for i := range chats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(every * time.Duration(i) / chats)
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				q := questions[int(n)%len(questions)]
				t0 := time.Now()
				resp, err := client.Post(f.srv.URL+"/api/chat/messages", "application/json",
					strings.NewReader(`{"chat":"`+ids[i]+`","text":"`+q+`"}`))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				for ev := range streams[i] {
					if ev.item.From == "bot" {
						break
					}
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				time.Sleep(every - d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "answers/s")
}
