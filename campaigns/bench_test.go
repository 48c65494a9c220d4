package campaigns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wneessen/go-mail"

	"csrdesk/internal/smtptest"
)

const benchConns = 10

// benchCampaign fills a list with n subscribers and creates a started campaign to it, of about 9 KB a mail.
func benchCampaign(b *testing.B, s *Store, n int) *Campaign { return sizedCampaign(b, s, n, 30) }

// sizedCampaign is benchCampaign with a body of paragraphs sentences: 30 make a mail of about 9 KB as sent
// (text and HTML, quoted-printable), a short event announcement; 120 about 27 KB, a monthly newsletter.
func sizedCampaign(b *testing.B, s *Store, n, paragraphs int) *Campaign {
	b.Helper()
	ctx := context.Background()
	if err := s.CreateList(ctx, List{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	batch := make([]*Subscriber, 0, importBatch)
	for i := range n {
		batch = append(batch, &Subscriber{Email: fmt.Sprintf("r%06d@example.com", i), Name: "Reader " + strconv.Itoa(i), Language: []string{"en", "de", "it", "fr", "es"}[i%5], Attrs: map[string]string{}})
		if len(batch) == importBatch || i == n-1 {
			if _, err := s.save(ctx, "bench", batch, true, Consent{Action: "confirmed", Via: "import"}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	// Personalised like a real mailing: the name once, the rest shared.
	body := "Dear {{.Subscriber.Name}},\n\n" + strings.Repeat("The platform's **news** of the month: events, training modules and the sector commitments. ", paragraphs)
	content := Content{Subject: map[string]string{"": "CSR news"}, Body: map[string]string{"": body}}
	c, err := s.CreateCampaign(ctx, Campaign{Name: "bench", Lists: []string{"bench"}, From: "news@platform.example", Content: content},
		func(c Content) error { _, err := Compile(c, mustLayout(b)); return err })
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Transition(ctx, c.ID, "start"); err != nil {
		b.Fatal(err)
	}
	return c
}

func runUntilFinished(b *testing.B, s *Store, w *Worker, id int64) time.Duration {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for {
		st, err := s.CampaignStatus(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if st.State == Finished {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	return elapsed
}

// BenchmarkSend compares a 20,000-recipient campaign through the whole send path (scheduler, Redis queue,
// delivery records, rate limiter, rendering and writing per recipient, over 10 connections) with two bare loops
// sending the campaign's messages, pre-rendered, to the same recipients over 10 connections to the same in-process
// SMTP sink:
//   - the go-mail loop: each message a go-mail Msg, built as go-mail's documentation builds one, sent with
//     Client.Send (without the NOOP and RSET it sends around each message by default, its faster setting). This
//     is the baseline the campaign path must keep up with.
//   - the raw loop: the campaign's own messages, written before, sent as they are (the transport's Conn). What
//     the campaign costs over it is the queue's cost.
//
// The three alternate, three rounds each, so that the machine's ups and downs touch all alike; the pre-rendered
// messages are built first, so that all run with the same heap. It runs for two sizes of mail.
func BenchmarkSend(b *testing.B) {
	for _, size := range []struct {
		name       string
		paragraphs int
	}{{"mail=9KB", 30}, {"mail=27KB", 120}} {
		b.Run(size.name, func(b *testing.B) { benchSend(b, size.paragraphs) })
	}
}

func benchSend(b *testing.B, paragraphs int) {
	const n, rounds = 20000, 3
	sink := smtptest.New(b)
	ctx := context.Background()
	for range b.N {
		s := NewStore(redisSrv.Client(b))
		first := sizedCampaign(b, s, n, paragraphs)
		cfg := DefaultWorkerConfig()
		cfg.Conns, cfg.Poll = benchConns, 5*time.Millisecond
		tr, _ := ParseSMTP("smtp://" + sink.Addr + "?tls=none")
		w := NewWorker(s, tr, mustLayout(b), cfg, slog.New(slog.DiscardHandler))
		// The campaign's own messages, one per recipient: the sink keeps the last message of each recipient, so
		// the loops must mail the same recipients for the sink to do the same work on all sides.
		msgs := make([]*mail.Msg, n)
		raws := make([]*Message, n)
		for i := range msgs {
			sub, err := s.Subscriber(ctx, fmt.Sprintf("r%06d@example.com", i))
			if err != nil {
				b.Fatal(err)
			}
			if raws[i], err = w.message(ctx, first, sub, ""); err != nil {
				b.Fatal(err)
			}
			_, r, unsubURL, token, err := w.render(ctx, first, sub)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = goMailMsg(b, first, sub, r, unsubURL, token, raws[i].From)
		}
		var size countWriter
		if _, err := msgs[0].WriteTo(&size); err != nil {
			b.Fatal(err)
		}
		var campaign, bare, raw time.Duration
		var redisSeconds, campaignCPU, bareCPU, rawCPU float64
		// loop sends every message once over benchConns connections, each opened by open; it returns the time and
		// this process's CPU.
		loop := func(open func() (send func(i int64) error, close func())) (time.Duration, float64) {
			var next atomic.Int64
			var wg sync.WaitGroup
			start, own0 := time.Now(), processCPU()
			for range benchConns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					send, close := open()
					defer close()
					for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
						if err := send(i); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			return time.Since(start), processCPU() - own0
		}
		host, port, _ := net.SplitHostPort(sink.Addr)
		portNum, _ := strconv.Atoi(port)
		goMail := func() (func(int64) error, func()) {
			c, err := mail.NewClient(host, mail.WithPort(portNum), mail.WithTLSPolicy(mail.NoTLS), mail.WithoutNoop(), mail.WithoutRset())
			if err == nil {
				err = c.DialWithContext(ctx)
			}
			return func(i int64) error {
				if err != nil {
					return err
				}
				return c.Send(msgs[i])
			}, func() { c.Close() }
		}
		rawConn := func() (func(int64) error, func()) {
			conn, _ := tr.Open()
			return func(i int64) error { return conn.Send(ctx, raws[i]) }, func() { conn.Close() }
		}
		for round := range rounds {
			c := first
			if round > 0 {
				var err error
				if c, err = s.CreateCampaign(ctx, Campaign{Name: "bench", Lists: first.Lists, From: first.From, Content: first.Content},
					func(Content) error { return nil }); err != nil {
					b.Fatal(err)
				}
				s.Transition(ctx, c.ID, "start")
			}
			cpu0, own0 := redisCPU(b, s.rdb), processCPU()
			campaign += runUntilFinished(b, s, NewWorker(s, tr, mustLayout(b), cfg, slog.New(slog.DiscardHandler)), c.ID)
			redisSeconds += redisCPU(b, s.rdb) - cpu0
			campaignCPU += processCPU() - own0

			elapsed, cpu := loop(goMail)
			bare += elapsed
			bareCPU += cpu
			elapsed, cpu = loop(rawConn)
			raw += elapsed
			rawCPU += cpu
		}
		b.ReportMetric(rounds*n/campaign.Seconds(), "campaign-msgs/s")
		b.ReportMetric(rounds*n/bare.Seconds(), "bare-gomail-msgs/s")
		b.ReportMetric(rounds*n/raw.Seconds(), "bare-raw-msgs/s")
		b.ReportMetric(100*bare.Seconds()/campaign.Seconds(), "campaign-%-of-gomail")
		b.ReportMetric(100*raw.Seconds()/campaign.Seconds(), "campaign-%-of-raw")
		// CPU per message: this process (sender and SMTP sink both) and Redis, for each side.
		b.ReportMetric(redisSeconds/(rounds*n)*1e6, "redis-cpu-µs/msg")
		b.ReportMetric(campaignCPU/(rounds*n)*1e6, "campaign-process-cpu-µs/msg")
		b.ReportMetric(bareCPU/(rounds*n)*1e6, "gomail-process-cpu-µs/msg")
		b.ReportMetric(rawCPU/(rounds*n)*1e6, "raw-process-cpu-µs/msg")
		b.ReportMetric(float64(size)/1000, "mail-KB")                       // as go-mail writes it
		b.ReportMetric(float64(len(raws[0].Data))/1000, "campaign-mail-KB") // as csrdesk writes it
	}
}

// goMailMsg builds a campaign mail the way go-mail's documentation builds one: the baseline of BenchmarkSend.
func goMailMsg(b *testing.B, c *Campaign, sub *Subscriber, r Rendered, unsubURL, token, returnPath string) *mail.Msg {
	m := mail.NewMsg()
	if err := m.From(c.From); err != nil {
		b.Fatal(err)
	}
	if err := m.AddToFormat(sub.Name, sub.Email); err != nil { // as writeMessage names the recipient
		b.Fatal(err)
	}
	if err := m.EnvelopeFrom(returnPath); err != nil {
		b.Fatal(err)
	}
	m.Subject(r.Subject)
	m.SetBodyString(mail.TypeTextPlain, r.Text)
	m.AddAlternativeString(mail.TypeTextHTML, r.HTML)
	domain := c.From[strings.LastIndexByte(c.From, '@')+1:]
	m.SetMessageID()
	m.SetGenHeader(mail.HeaderListUnsubscribe, "<"+unsubURL+">", "<mailto:unsubscribe@"+domain+"?subject=unsubscribe%20"+token+">")
	m.SetGenHeader(mail.HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	m.SetGenHeader("X-Csrdesk-Campaign", strconv.FormatInt(c.ID, 10))
	m.SetBulk()
	m.SetDate()
	return m
}

// countWriter counts the bytes written to it.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// noop is a transport that sends nothing, to measure the queue alone.
type noop struct{}

func (noop) Open() (Conn, error)                  { return noop{}, nil }
func (noop) Send(context.Context, *Message) error { return nil }
func (noop) Close() error                         { return nil }

// BenchmarkQueue measures the queue alone (no-op transport, rendering included) next to a raw Redis Streams
// XREADGROUP/XACK loop over as many entries, in the same run.
func BenchmarkQueue(b *testing.B) {
	const n = 20000
	for range b.N {
		rc := redisSrv.Client(b)
		s := NewStore(rc)
		c := benchCampaign(b, s, n)
		cfg := DefaultWorkerConfig()
		cfg.Conns, cfg.Poll = benchConns, 5*time.Millisecond
		cpu0, own0 := redisCPU(b, rc), processCPU()
		queue := runUntilFinished(b, s, NewWorker(s, noop{}, mustLayout(b), cfg, slog.New(slog.DiscardHandler)), c.ID)
		redisSeconds, ownSeconds := redisCPU(b, rc)-cpu0, processCPU()-own0

		ctx := context.Background()
		pipe := rc.Pipeline()
		for i := range n {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "raw", Values: map[string]any{"e": i}})
		}
		pipe.Exec(ctx)
		rc.XGroupCreate(ctx, "raw", "g", "0")
		start := time.Now()
		var wg sync.WaitGroup
		for c := range benchConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					res, err := rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: strconv.Itoa(c), Streams: []string{"raw", ">"}, Count: 40, Block: -1}).Result()
					if err != nil || len(res[0].Messages) == 0 {
						return
					}
					for _, m := range res[0].Messages {
						rc.XAck(ctx, "raw", "g", m.ID)
					}
				}
			}()
		}
		wg.Wait()
		raw := time.Since(start)
		b.ReportMetric(n/queue.Seconds(), "queue-jobs/s")
		b.ReportMetric(n/raw.Seconds(), "raw-xreadgroup-xack/s")
		// What a recipient costs besides the sending itself: this process (scheduling, reading, rendering,
		// recording) and Redis.
		b.ReportMetric(ownSeconds/n*1e6, "queue-process-cpu-µs/job")
		b.ReportMetric(redisSeconds/n*1e6, "queue-redis-cpu-µs/job")
	}
}

// BenchmarkWorkerMemory reports the worker's peak heap for campaigns of 1,000 and 100,000 recipients (no-op
// transport), and Redis memory per queued recipient.
func BenchmarkWorkerMemory(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				rc := redisSrv.Client(b)
				s := NewStore(rc)
				c := benchCampaign(b, s, n)
				ctx := context.Background()
				cfg := DefaultWorkerConfig()
				cfg.Conns, cfg.Poll, cfg.Ahead = benchConns, 5*time.Millisecond, n
				w := NewWorker(s, noop{}, mustLayout(b), cfg, slog.New(slog.DiscardHandler))

				// Redis memory per queued recipient: queue everyone, measure, then deliver.
				before := usedMemory(b, rc)
				for queued := int64(0); queued < int64(n); {
					if err := w.schedule(ctx, c); err != nil {
						b.Fatal(err)
					}
					queued = rc.XLen(ctx, campaignKeys(c.ID).jobs).Val()
				}
				perRecipient := float64(usedMemory(b, rc)-before) / float64(n)

				// The peak heap in use (garbage included, so it depends on GC timing) and the peak live heap
				// (what the last collection kept): neither may grow with the campaign's size.
				runtime.GC()
				var peak, peakLive uint64
				stop := make(chan struct{})
				sampled := make(chan struct{})
				go func() {
					defer close(sampled)
					var ms runtime.MemStats
					live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
					for {
						select {
						case <-stop:
							return
						case <-time.After(20 * time.Millisecond):
							runtime.ReadMemStats(&ms)
							metrics.Read(live)
							peak = max(peak, ms.HeapInuse)
							peakLive = max(peakLive, live[0].Value.Uint64())
						}
					}
				}()
				runUntilFinished(b, s, w, c.ID)
				close(stop)
				<-sampled
				b.ReportMetric(float64(peak)/(1<<20), "worker-peak-heap-MB")
				b.ReportMetric(float64(peakLive)/(1<<20), "worker-peak-live-heap-MB")
				b.ReportMetric(perRecipient, "redis-bytes/queued-recipient")
			}
		})
	}
}

func usedMemory(b *testing.B, rc *redis.Client) int64 {
	info, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO")
	return 0
}

// processCPU is the CPU time this process has used, in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// redisCPU is the CPU time the Redis server has used, in seconds.
func redisCPU(b *testing.B, rc redis.UniversalClient) float64 {
	info, err := rc.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var t float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				t += f
			}
		}
	}
	return t
}
