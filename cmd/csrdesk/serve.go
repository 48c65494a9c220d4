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
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	defer rc.Close()

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

	if cfg.Slack.BotToken != "" {
		sl, err := slack.New(cfg.Slack, engine, kb.Matcher, rc, log)
		if err != nil {
			return err
		}
		mux.Handle("POST /slack/events", sl.EventsHandler())
		mux.Handle("POST /slack/interactions", sl.InteractionsHandler())
		go sl.Run(ctx)
	}
	if cfg.Telegram.Token != "" {
		tg, err := telegram.New(cfg.Telegram, engine, rc, log)
		if err != nil {
			return err
		}
		mux.Handle("POST /telegram/webhook", tg.WebhookHandler())
		go func() {
			if err := tg.Run(ctx); err != nil {
				log.Error("telegram stopped", "err", err)
			}
		}()
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Streams (server-sent events) end when the server shuts down, instead of holding it up.
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	srv.RegisterOnShutdown(cancelBase)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = kb.Reload() // an invalid base is logged; the last good one keeps serving
			}
		}
	}()
	go func() {
		if err := kb.Watch(ctx); err != nil {
			log.Warn("knowledge base will not reload on its own", "err", err)
		}
	}()
	go remind(ctx, engine, log)
	go ds.Watch(ctx, datasetCheck)
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		if err := mailWorker.Run(workerCtx); err != nil {
			log.Error("campaign worker stopped", "err", err)
		}
	}()
	defer func() { stopWorker(); <-workerDone }() // it finishes the messages it has taken
	go webSrv.Run(ctx)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("csrdesk serving", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "redis", rdb.Redact(cfg.RedisURL),
		"entries", len(kb.Matcher().Base().Entries), "web_chat", cfg.PublicURL+"/chat", "staff_inbox", cfg.PublicURL+"/staff")
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
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
		writeJSON(w, http.StatusOK, toJSON(kb.Matcher().Match(q, hint)))
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
