package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"csrdesk/bot"
	"csrdesk/bot/slack"
	"csrdesk/bot/telegram"
	"csrdesk/bot/web"
	"csrdesk/campaigns"
	"csrdesk/faq"
	"csrdesk/internal/rdb"
	"csrdesk/templates"
)

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the help desk until ctx is done: the knowledge base (reloaded when its files change or on SIGHUP),
// the conversation engine, the web chat and staff inbox, metrics, and the reminders for unclaimed tickets.
func serve(ctx context.Context, cfg config, args []string, stderr io.Writer) error {
	if len(args) > 0 {
		return usageError("serve takes no arguments; configure it with CSRDESK_* variables")
	}
	log := newLogger(cfg, stderr)
	kb, err := faq.Open(cfg.FAQDir, cfg.FAQ, log)
	if err != nil {
		return err
	}
	texts, err := templates.Bot()
	if err != nil {
		return err
	}
	rc, ds, err := openRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	// Until the parts start, a setup that fails closes Redis here; then stop closes it, once they are done.
	closeRedis := true
	defer func() {
		if closeRedis {
			rc.Close()
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	engine := bot.New(cfg.Bot, rc, kb.Matcher, texts, bot.NewMetrics(reg), log)

	if cfg.Secret == "" {
		return errNoSecret
	}
	secret := []byte(cfg.Secret)
	webSrv, err := web.New(web.Config{PublicURL: cfg.PublicURL, StaffToken: cfg.StaffToken, StaffUsers: cfg.StaffUsers, Secret: secret}, engine, rc, log)
	if err != nil {
		return err
	}
	if !webSrv.StaffEnabled() {
		log.Warn("the staff inbox is off: set CSRDESK_STAFF_TOKEN or CSRDESK_STAFF_USERS")
	}

	mux := newMux(kb, ds)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	webSrv.Register(mux)

	m, err := mailer(cfg)
	if err != nil {
		return err
	}
	store := campaigns.NewStore(rc)
	reg.MustRegister(queues{engine: engine, store: store}, redisHealth{ds})
	mailWorker := campaigns.NewWorker(store, m.transport, m.layout, m.worker, log)
	subs, err := campaigns.NewSubscriptions(store, m.transport,
		campaigns.SubscriptionsConfig{PublicURL: cfg.PublicURL, From: cfg.MailFrom, Secret: m.worker.Secret}, log)
	if err != nil {
		return err
	}
	subs.Register(mux)
	engine.SetSubscribe(cfg.PublicURL+"/subscribe", func(ctx context.Context, email string, lang faq.Lang, via, source, consent string) error {
		err := subs.Subscribe(ctx, campaigns.Subscription{Email: email, Language: string(lang), Via: via, Source: source, Text: consent})
		if errors.Is(err, campaigns.ErrInvalid) {
			return fmt.Errorf("%w: %v", bot.ErrInvalid, err)
		}
		return err
	})
	if cfg.APIToken != "" {
		(&campaigns.API{Store: store, Layout: m.layout, Transport: m.transport, Worker: m.worker, Token: cfg.APIToken, Log: log,
			Subscriptions: subs, Inbound: &campaigns.Inbound{Store: store, Secret: m.worker.Secret, HardBounces: m.worker.HardBounces},
			OnErase: func(ctx context.Context, email string) error { _, err := forgetInChats(ctx, rc, email); return err }}).Register(mux)
	}

	// Everything that can fail is set up before any part starts, so that a failure returns with nothing
	// running on Redis.
	var parts []func(*lifecycle)
	if cfg.Slack.BotToken != "" {
		sl, err := slack.New(cfg.Slack, engine, kb.Matcher, rc, log)
		if err != nil {
			return err
		}
		mux.Handle("POST /slack/events", sl.EventsHandler())
		mux.Handle("POST /slack/interactions", sl.InteractionsHandler())
		parts = append(parts, func(lc *lifecycle) { lc.Go("slack", sl.Run) })
	}
	if cfg.Telegram.Token != "" {
		tg, err := telegram.New(cfg.Telegram, engine, rc, log)
		if err != nil {
			return err
		}
		mux.Handle("POST /telegram/webhook", tg.WebhookHandler())
		parts = append(parts, func(lc *lifecycle) {
			lc.Go("telegram", func(ctx context.Context) error {
				// The help desk goes on without Telegram (a webhook Telegram refused, say): logged, not fatal.
				if err := tg.Run(ctx); err != nil {
					log.Error("telegram stopped", "err", err)
				}
				return nil
			})
		})
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Requests run on the server's default base context, which a shutdown does not cancel: a request in
	// flight at SIGTERM completes (a chat message is stored and answered). Only the event streams, which would
	// hold a shutdown up for ever, are ended when it starts.
	requests := &inFlight{h: mux}
	srv := &http.Server{
		Handler:           requests,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(webSrv.EndStreams)

	lc := newLifecycle(ctx, cfg.ShutdownTimeout, log)
	closeRedis = false
	for _, start := range parts {
		start(lc)
	}
	lc.Go("http", func(ctx context.Context) error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	lc.Go("http drain", func(ctx context.Context) error {
		<-ctx.Done()
		// Shutdown closes the listener, then waits for the requests in flight, until the deadline.
		if err := srv.Shutdown(lc.drain); err != nil {
			n := requests.n.Load()
			log.Error("shutdown: HTTP requests still in flight at the deadline are cut off", "requests", n, "err", err, "cause", context.Cause(lc.drain))
			srv.Close()
			// A failure of the stop: the process exits 1, and Redis stays open under the handlers cut off.
			return fmt.Errorf("%d requests cut off: %w", n, errDeadline)
		}
		return nil
	})

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	lc.Go("knowledge base reload", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				_ = kb.Reload() // an invalid base is logged; the last good one keeps serving
			}
		}
	})
	lc.Go("knowledge base watch", func(ctx context.Context) error {
		if err := kb.Watch(ctx); err != nil {
			log.Warn("knowledge base will not reload on its own", "err", err)
		}
		return nil
	})
	lc.Go("ticket reminders", func(ctx context.Context) error { remind(ctx, engine, log); return nil })
	lc.Go("redis data set", func(ctx context.Context) error { ds.Watch(ctx, datasetCheck); return nil })
	lc.OnAbandon("campaign worker", abandonedMail)
	lc.Go("campaign worker", func(ctx context.Context) error {
		// Run finishes the messages it has taken once ctx is done; the desk goes on without mail if it fails.
		if err := mailWorker.Run(ctx); err != nil {
			log.Error("campaign worker stopped", "err", err)
		}
		return nil
	})
	lc.OnAbandon("http drain", "the requests still in flight are cut off; their clients see the connection close")
	lc.Go("web chat news", func(ctx context.Context) error { webSrv.Run(ctx); return nil })

	log.Info("csrdesk serving", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "redis", rdb.Redact(cfg.RedisURL),
		"entries", len(kb.Matcher().Base().Entries), "web_chat", cfg.PublicURL+"/chat", "staff_inbox", cfg.PublicURL+"/staff")
	<-lc.ctx.Done()
	log.Info("shutting down", "cause", context.Cause(lc.ctx), "requests_in_flight", requests.n.Load(), "timeout", cfg.ShutdownTimeout)
	return stop(lc, rc, log)
}

// abandonedMail is what becomes of the campaign worker's messages when a shutdown gives up on it.
const abandonedMail = "the jobs the campaign worker had taken stay pending; another worker takes them after CSRDESK_MAIL_CLAIM_IDLE, and a message the mail server accepted but not yet recorded may go out twice"

// stop waits for the parts of a process to drain, then closes Redis. When the deadline passes it leaves Redis
// open: the abandoned parts would only add "redis: client is closed" to the log, and the process exits anyway.
func stop(lc *lifecycle, rc redis.UniversalClient, log *slog.Logger) error {
	err := lc.Wait()
	if errors.Is(err, errDeadline) {
		return err
	}
	if cerr := rc.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close redis: %w", cerr)
	}
	if err == nil {
		log.Info("stopped", "took", lc.Since().Round(time.Millisecond))
	}
	return err
}

// inFlight counts the requests being handled (open event streams included), for the log of a shutdown.
type inFlight struct {
	n atomic.Int64
	h http.Handler
}

func (f *inFlight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.n.Add(1)
	defer f.n.Add(-1)
	f.h.ServeHTTP(w, r)
}

// remind raises reminders for unclaimed tickets every half minute until ctx is done.
func remind(ctx context.Context, engine *bot.Engine, log *slog.Logger) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := engine.RemindUnclaimed(ctx); err != nil && ctx.Err() == nil {
				log.Warn("ticket reminders", "err", err)
			}
		}
	}
}

// maxQuestion is the longest question the API takes, in bytes.
const maxQuestion = 4000

func newMux(kb *faq.Live, ds *rdb.Dataset) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthHandler(ds))
	// GET /api/faq/ask?q=...&lang=xx: the matcher's decision, as csrdesk faq ask --json prints it.
	mux.HandleFunc("GET /api/faq/ask", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("q")
		if len(q) > maxQuestion || !utf8.ValidString(q) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("q must be UTF-8 text of at most %d bytes", maxQuestion)})
			return
		}
		var hint faq.Lang
		if l := r.URL.Query().Get("lang"); l != "" {
			var ok bool
			if hint, ok = faq.ParseLang(l); !ok {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "lang must be one of en, de, it, fr, es"})
				return
			}
		}
		writeJSON(w, http.StatusOK, toJSON(kb.Matcher().Match(q, faq.Hint{App: hint})))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
