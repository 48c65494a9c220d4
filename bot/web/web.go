// Package web is the help desk's own face: the web chat that the platform links or embeds, and the staff inbox
// for answering tickets when Slack is not used. The chat talks to csrdesk over a small JSON API; replies, from the
// bot or from staff, reach the page by server-sent events read from a Redis stream per chat, so any csrdesk
// process can answer and a page that reconnects (or reloads) misses nothing.
package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/yuin/goldmark"

	"csrdesk/bot"
	"csrdesk/faq"
	"csrdesk/internal/rdb"
)

//go:embed assets
var assets embed.FS

// Config configures the web faces.
type Config struct {
	PublicURL  string            // where csrdesk is reached, for links
	StaffToken string            // a shared staff token: staff log in with their name and it
	StaffUsers map[string]string // or named staff accounts: name -> password
	Secret     []byte            // signs staff sessions
	HistoryTTL time.Duration     // how long a chat's messages are kept for the page
	// StreamWait is how long an event stream waits in Redis for news before sending a keep-alive. go-redis does
	// not abandon a blocked read when its context ends, so this also bounds how long a shutdown waits for open
	// streams. Default 5 s.
	StreamWait time.Duration
	// NewChatsPerMin limits how many chats one address may start per minute (default 30; -1 for no limit).
	NewChatsPerMin int
}

// Server serves the web chat and the staff inbox, and is the engine's "web" channel.
type Server struct {
	cfg    Config
	engine *bot.Engine
	rdb    redis.UniversalClient
	log    *slog.Logger
	md     goldmark.Markdown
	pages  *pages
	hub    *hub
	limit  *redis_rate.Limiter
	// ending is closed by EndStreams: the event streams, which never finish on their own, end then.
	ending  chan struct{}
	endOnce sync.Once
}

// ChannelName is the name the web chat's messages carry.
const ChannelName = "web"

// New returns the web server and registers it with the engine as the web chat's channel.
func New(cfg Config, engine *bot.Engine, rdb redis.UniversalClient, log *slog.Logger) (*Server, error) {
	if cfg.HistoryTTL == 0 {
		cfg.HistoryTTL = 7 * 24 * time.Hour
	}
	if cfg.StreamWait == 0 {
		cfg.StreamWait = 5 * time.Second
	}
	if cfg.NewChatsPerMin == 0 {
		cfg.NewChatsPerMin = 30
	}
	md := goldmark.New()
	p, err := loadPages(md)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, engine: engine, rdb: rdb, log: log, md: md, pages: p, hub: newHub(), limit: redis_rate.NewLimiter(rdb), ending: make(chan struct{})}
	engine.Register(ChannelName, s)
	return s, nil
}

// Run relays news of chats and tickets to the pages open in this process, until ctx is done.
func (s *Server) Run(ctx context.Context) { s.hub.run(ctx, s.rdb) }

// EndStreams ends the open event streams, and those that open later at once: a server shutting down calls it
// (http.Server.RegisterOnShutdown) so that the streams do not hold the shutdown up, while ordinary requests in
// flight still complete. The browser reconnects, with Last-Event-ID, to a process that is running.
func (s *Server) EndStreams() { s.endOnce.Do(func() { close(s.ending) }) }

// Register adds the web chat's and the staff inbox's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/chat", http.StatusFound) })
	mux.HandleFunc("GET /chat", s.chatPage)
	mux.HandleFunc("POST /api/chat/session", s.newSession)
	mux.HandleFunc("POST /api/chat/messages", s.postMessage)
	mux.HandleFunc("GET /api/chat/events", s.events)
	s.registerStaff(mux)
}

func streamKey(chat string) string { return rdb.WebChatPrefix + chat }

var chatID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// item is one message of a web chat as the page receives it.
type item struct {
	From    string         `json:"from"`           // user, bot or staff
	Text    string         `json:"text,omitempty"` // the person's own message, as plain text
	HTML    string         `json:"html,omitempty"` // a reply, rendered from Markdown (raw HTML is dropped)
	Buttons [][]bot.Button `json:"buttons,omitempty"`
}

// Send delivers a reply to a web chat: it is appended to the chat's stream, which the page follows.
func (s *Server) Send(ctx context.Context, chat string, r bot.Reply) error {
	var html bytes.Buffer
	if err := s.md.Convert([]byte(r.Text), &html); err != nil {
		return fmt.Errorf("render reply: %w", err)
	}
	return s.append(ctx, chat, item{From: r.From, HTML: html.String(), Buttons: r.Buttons})
}

func (s *Server) append(ctx context.Context, chat string, it item) error {
	data, _ := json.Marshal(it)
	pipe := s.rdb.TxPipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: streamKey(chat), MaxLen: 500, Approx: true, Values: map[string]any{"m": data}})
	pipe.Expire(ctx, streamKey(chat), s.cfg.HistoryTTL)
	pipe.Publish(ctx, bot.NotifyChannel, chat)
	_, err := pipe.Exec(ctx)
	return err
}

func (s *Server) chatPage(w http.ResponseWriter, r *http.Request) {
	s.pages.render(w, "chat.html", nil)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// newSession starts a chat: its id is the secret that lets the page read the chat. New chats are limited per
// address, since the engine's rate limit is per chat.
func (s *Server) newSession(w http.ResponseWriter, r *http.Request) {
	if s.cfg.NewChatsPerMin > 0 && !s.allow(r, "session", redis_rate.PerMinute(s.cfg.NewChatsPerMin)) {
		jsonError(w, http.StatusTooManyRequests, "too many new chats from your address; please wait a minute")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"chat": newID()})
}

// allow applies a rate limit per client address (the connection's; behind a proxy, all clients share the
// proxy's). When Redis fails it lets the request through: the limit protects, it must not take the desk down.
func (s *Server) allow(r *http.Request, what string, limit redis_rate.Limit) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	res, err := s.limit.Allow(r.Context(), rdb.WebRatePrefix+what+":"+host, limit)
	if err != nil {
		s.log.Warn("rate limit", "what", what, "err", err)
		return true
	}
	return res.Allowed > 0
}

// maxBody bounds what the chat API reads; the engine itself replies politely to overlong messages.
const maxBody = 32 << 10

type postedMessage struct {
	Chat  string `json:"chat"`
	Text  string `json:"text"`
	Data  string `json:"data"`  // a pressed button's data
	Label string `json:"label"` // and its label, shown in the transcript
	Lang  string `json:"lang"`  // the browser's language
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	var m postedMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&m); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			jsonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
			return
		}
		jsonError(w, http.StatusBadRequest, "body must be JSON: {\"chat\", \"text\"} or {\"chat\", \"data\", \"label\"}")
		return
	}
	if !chatID.MatchString(m.Chat) {
		jsonError(w, http.StatusBadRequest, "chat must be the id from POST /api/chat/session")
		return
	}
	if strings.TrimSpace(m.Text) == "" && m.Data == "" {
		jsonError(w, http.StatusBadRequest, "text or data is required")
		return
	}
	if len(m.Data) > 200 || len(m.Label) > 500 {
		jsonError(w, http.StatusBadRequest, "data or label too long")
		return
	}
	shown := m.Text
	if m.Data != "" {
		shown = m.Label
	}
	ctx := r.Context()
	if shown != "" && m.Text != "/start" { // the page sends /start itself to greet; it is not the person's words
		if err := s.append(ctx, m.Chat, item{From: "user", Text: truncate(shown, 4000)}); err != nil {
			s.log.Error("web chat: store message", "err", err)
			jsonError(w, http.StatusServiceUnavailable, "the help desk cannot take messages right now")
			return
		}
	}
	hint, _ := faq.ParseLang(m.Lang)
	msg := bot.Message{Channel: ChannelName, Chat: m.Chat, User: m.Chat, LangHint: hint, Text: m.Text, Data: m.Data}
	if err := s.engine.Handle(ctx, msg); err != nil {
		s.log.Error("web chat: handle message", "err", err)
		jsonError(w, http.StatusServiceUnavailable, "the help desk cannot take messages right now")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// events streams a chat's messages as server-sent events, from the start (the page shows the history) or after
// the Last-Event-ID the browser sends when it reconnects.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	chat := r.URL.Query().Get("chat")
	if !chatID.MatchString(chat) {
		http.Error(w, "chat must be the id from POST /api/chat/session", http.StatusBadRequest)
		return
	}
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = "0"
	}
	if !streamID.MatchString(after) {
		http.Error(w, "bad Last-Event-ID", http.StatusBadRequest)
		return
	}
	s.stream(w, r, chat, streamKey(chat), after, func(id string, v map[string]any) {
		fmt.Fprintf(w, "id: %s\ndata: %s\n\n", id, v["m"])
	})
}

// stream sends the entries of a Redis stream after the given id as server-sent events, then each new entry as
// the hub announces it, until the client goes away or EndStreams is called. Without news it re-reads every StreamWait, which sends a
// keep-alive and covers a notice lost while Pub/Sub reconnected.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, topic, key, after string, write func(id string, v map[string]any)) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	news, stop := s.hub.watch(topic)
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ctx := r.Context()
	timer := time.NewTimer(s.cfg.StreamWait)
	defer timer.Stop()
	for {
		msgs, err := s.rdb.XRangeN(ctx, key, "("+after, "+", 100).Result()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("event stream: read", "err", err)
			}
			return // the browser reconnects with Last-Event-ID
		}
		for _, m := range msgs {
			write(m.ID, m.Values)
			after = m.ID
		}
		if len(msgs) == 100 {
			flusher.Flush()
			continue // more to catch up on
		}
		if len(msgs) == 0 {
			fmt.Fprint(w, ": keep-alive\n\n") // proxies close quiet connections
		}
		flusher.Flush()
		timer.Reset(s.cfg.StreamWait)
		select {
		case <-ctx.Done():
			return
		case <-s.ending:
			return
		case <-news:
		case <-timer.C:
		}
	}
}

var streamID = regexp.MustCompile(`^\d+(-\d+)?$`)

// Forget deletes, from every web chat's history, the messages that mention an address: when someone asks to be
// erased, what they typed (an answer to /subscribe, say) and the replies that named it go too. It returns how
// many messages it deleted.
func Forget(ctx context.Context, c redis.UniversalClient, email string) (int, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	deleted := 0
	if email == "" {
		return 0, nil
	}
	err := rdb.Scan(ctx, c, streamKey("*"), "stream", func(ctx context.Context, c *redis.Client, key string) error {
		msgs, err := c.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if raw, _ := m.Values["m"].(string); strings.Contains(strings.ToLower(raw), email) {
				if err := c.XDel(ctx, key, m.ID).Err(); err != nil {
					return err
				}
				deleted++
			}
		}
		return nil
	})
	return deleted, err
}
