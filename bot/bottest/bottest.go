// Package bottest builds a conversation engine on the shipped knowledge base, for the tests of the chat
// adapters (web, Telegram, Slack).
package bottest

import (
	"log/slog"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"csrdesk/bot"
	"csrdesk/faq"
	"csrdesk/templates"
)

var (
	once    sync.Once
	matcher *faq.Matcher
	loadErr error
)

// Matcher returns a matcher of the embedded knowledge base, built once per test binary.
func Matcher(tb testing.TB) *faq.Matcher {
	tb.Helper()
	once.Do(func() {
		b, problems := faq.Load(faq.Embedded())
		if b == nil {
			loadErr = problems
			return
		}
		matcher = faq.NewMatcher(b, faq.DefaultConfig())
	})
	if loadErr != nil {
		tb.Fatal(loadErr)
	}
	return matcher
}

// Config is the engine's default configuration for tests: no rate limit, staff always at work.
func Config() bot.Config {
	cfg := bot.DefaultConfig()
	cfg.RatePerMin = 0
	cfg.Hours, _ = bot.ParseHours("always")
	return cfg
}

// Engine returns an engine on rdb with the shipped knowledge base and texts.
func Engine(tb testing.TB, rdb redis.UniversalClient, cfg bot.Config) *bot.Engine {
	tb.Helper()
	texts, err := templates.Bot()
	if err != nil {
		tb.Fatal(err)
	}
	m := Matcher(tb)
	return bot.New(cfg, rdb, func() *faq.Matcher { return m }, texts, bot.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
}
