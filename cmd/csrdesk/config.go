package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"csrdesk/bot"
	"csrdesk/bot/slack"
	"csrdesk/bot/telegram"
	"csrdesk/campaigns"
	"csrdesk/faq"
)

// config is csrdesk's configuration, read from the environment. The README's table lists every variable.
type config struct {
	RedisURL  string
	HTTPAddr  string
	PublicURL string
	FAQDir    string
	FAQ       faq.Config
	LogFormat string
	LogLevel  slog.Level

	Bot        bot.Config
	StaffToken string
	StaffUsers map[string]string
	Secret     string

	Telegram telegram.Config
	Slack    slack.Config

	SMTPURL   string
	OutboxDir string
	MailRate  int
	MailFrom  string
	// BounceAddress is the base of campaign mails' return paths (bounces+<campaign>-<subscriber>@domain);
	// empty for bounces@ the sender's domain.
	BounceAddress string
	ClaimIdle     time.Duration // how long a dead worker's jobs wait before another takes them
	RetryBase     time.Duration // the wait before a recipient refused with 4xx is tried again, doubled each time
	APIToken      string
	// ShutdownTimeout bounds a stop: how long serve and worker wait, after SIGTERM, for the requests and
	// messages they have taken.
	ShutdownTimeout time.Duration

	DKIMKeyFile, DKIMDomain, DKIMSelector string
}

func parseConfig(getenv func(string) string) (config, error) {
	c := config{
		RedisURL:  "redis://127.0.0.1:6379/0",
		HTTPAddr:  "127.0.0.1:8080",
		FAQ:       faq.DefaultConfig(),
		LogFormat: "text",
		Bot:       bot.DefaultConfig(),
		OutboxDir: "var/outbox",
		MailFrom:  "csrdesk@localhost.localdomain",
		MailRate:  50,
		// Under the 30 s Kubernetes gives by default between SIGTERM and SIGKILL.
		ShutdownTimeout: 20 * time.Second,
	}
	var errs []string
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	score := func(name string, dst *float64) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			errs = append(errs, fmt.Sprintf("%s=%q: want a number from 0 to 1", name, v))
			return
		}
		*dst = f
	}
	str("CSRDESK_REDIS_URL", &c.RedisURL)
	str("CSRDESK_HTTP_ADDR", &c.HTTPAddr)
	str("CSRDESK_PUBLIC_URL", &c.PublicURL)
	str("CSRDESK_FAQ_DIR", &c.FAQDir)
	score("CSRDESK_FAQ_CONFIDENCE", &c.FAQ.Answer)
	for _, old := range []string{"CSRDESK_FAQ_ANSWER", "CSRDESK_FAQ_MARGIN"} {
		if getenv(old) != "" {
			errs = append(errs, fmt.Sprintf("%s is gone: the matcher now answers when its confidence model is sure enough, set by CSRDESK_FAQ_CONFIDENCE (a probability, default %.3f); unset %s", old, faq.DefaultConfig().Answer, old))
		}
	}
	score("CSRDESK_FAQ_SUGGEST", &c.FAQ.Suggest)
	score("CSRDESK_FAQ_HUMAN", &c.FAQ.Human)
	if v := getenv("CSRDESK_DEFAULT_LANG"); v != "" {
		if l, ok := faq.ParseLang(v); ok && string(l) == v {
			c.FAQ.Lang = l
		} else {
			errs = append(errs, fmt.Sprintf("CSRDESK_DEFAULT_LANG=%q: want one of en, de, it, fr, es", v))
		}
	}
	str("CSRDESK_LOG_FORMAT", &c.LogFormat)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Sprintf("CSRDESK_LOG_FORMAT=%q: want text or json", c.LogFormat))
	}
	if v := getenv("CSRDESK_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Sprintf("CSRDESK_LOG_LEVEL=%q: want debug, info, warn or error", v))
		}
	}
	str("TELEGRAM_BOT_TOKEN", &c.Telegram.Token)
	str("TELEGRAM_API_ENDPOINT", &c.Telegram.Endpoint)
	str("TELEGRAM_WEBHOOK_URL", &c.Telegram.WebhookURL)
	str("TELEGRAM_WEBHOOK_SECRET", &c.Telegram.WebhookSecret)
	if c.Telegram.Endpoint != "" && strings.Count(c.Telegram.Endpoint, "%s") != 2 {
		errs = append(errs, fmt.Sprintf("TELEGRAM_API_ENDPOINT=%q: want a pattern with two %%s, like https://api.telegram.org/bot%%s/%%s", c.Telegram.Endpoint))
	}
	if c.Telegram.WebhookURL != "" && c.Telegram.WebhookSecret == "" {
		errs = append(errs, "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET, so that nobody else can post updates")
	}
	str("SLACK_BOT_TOKEN", &c.Slack.BotToken)
	str("SLACK_SIGNING_SECRET", &c.Slack.SigningSecret)
	str("SLACK_API_URL", &c.Slack.APIURL)
	str("SLACK_STAFF_CHANNEL", &c.Slack.StaffChannel)
	str("SLACK_APP_TOKEN", &c.Slack.AppToken)
	if c.Slack.BotToken != "" && c.Slack.SigningSecret == "" && c.Slack.AppToken == "" {
		errs = append(errs, "SLACK_BOT_TOKEN needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (to verify the requests Slack sends to /slack/events and /slack/interactions)")
	}
	if c.Slack.AppToken != "" && !strings.HasPrefix(c.Slack.AppToken, "xapp-") {
		errs = append(errs, "SLACK_APP_TOKEN: an app-level token starts with xapp- (Basic Information, App-Level Tokens, scope connections:write)")
	}
	str("CSRDESK_STAFF_TOKEN", &c.StaffToken)
	str("CSRDESK_SECRET", &c.Secret)
	if v := strings.TrimSpace(getenv("CSRDESK_STAFF_USERS")); v != "" {
		c.StaffUsers = map[string]string{}
		for _, pair := range strings.Split(v, ",") {
			name, pass, ok := strings.Cut(strings.TrimSpace(pair), ":")
			if !ok || strings.TrimSpace(name) == "" || pass == "" {
				errs = append(errs, "CSRDESK_STAFF_USERS: want name:password pairs separated by commas")
				break
			}
			c.StaffUsers[strings.TrimSpace(name)] = pass
		}
	}
	if v := strings.TrimSpace(getenv("CSRDESK_OFFICE_HOURS")); v != "" {
		h, err := bot.ParseHours(v)
		if err != nil {
			errs = append(errs, "CSRDESK_OFFICE_HOURS: "+err.Error())
		}
		c.Bot.Hours = h
	}
	duration := func(name string, dst *time.Duration) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Sprintf("%s=%q: want a duration like 30m or 2h", name, v))
				return
			}
			*dst = d
		}
	}
	duration("CSRDESK_TICKET_REMIND", &c.Bot.RemindAfter)
	duration("CSRDESK_CHAT_STATE_TTL", &c.Bot.StateTTL)
	integer := func(name string, dst *int, min int) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < min {
				errs = append(errs, fmt.Sprintf("%s=%q: want a whole number of at least %d", name, v, min))
				return
			}
			*dst = n
		}
	}
	integer("CSRDESK_RATE_PER_MIN", &c.Bot.RatePerMin, 0)
	integer("CSRDESK_MAIL_RATE", &c.MailRate, 0)
	tgRate := 0
	integer("TELEGRAM_RATE", &tgRate, 1)
	if tgRate > 0 {
		c.Telegram.Overall = redis_rate.Limit{Rate: tgRate, Burst: tgRate, Period: time.Second}
	}
	str("CSRDESK_SMTP_URL", &c.SMTPURL)
	str("CSRDESK_OUTBOX_DIR", &c.OutboxDir)
	str("CSRDESK_MAIL_FROM", &c.MailFrom)
	str("CSRDESK_BOUNCE_ADDRESS", &c.BounceAddress)
	if c.BounceAddress != "" {
		if a, err := campaigns.NormalizeEmail(c.BounceAddress); err != nil || a != strings.ToLower(c.BounceAddress) || strings.Contains(a, "+") {
			errs = append(errs, "CSRDESK_BOUNCE_ADDRESS: want a plain address without +, e.g. bounces@platform.example")
		}
	}
	duration("CSRDESK_MAIL_CLAIM_IDLE", &c.ClaimIdle)
	duration("CSRDESK_MAIL_RETRY_BASE", &c.RetryBase)
	duration("CSRDESK_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	str("CSRDESK_API_TOKEN", &c.APIToken)
	str("CSRDESK_DKIM_KEY_FILE", &c.DKIMKeyFile)
	str("CSRDESK_DKIM_SELECTOR", &c.DKIMSelector)
	str("CSRDESK_DKIM_DOMAIN", &c.DKIMDomain)
	if c.DKIMKeyFile != "" && c.DKIMSelector == "" {
		errs = append(errs, "CSRDESK_DKIM_KEY_FILE needs CSRDESK_DKIM_SELECTOR (the selector of the DNS record _domainkey)")
	}
	if c.DKIMDomain == "" {
		c.DKIMDomain = c.MailFrom[strings.LastIndexByte(c.MailFrom, '@')+1:]
	}
	integer("CSRDESK_MAX_MESSAGE", &c.Bot.MaxMessage, 1)
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Sprintf("CSRDESK_HTTP_ADDR=%q: want host:port", c.HTTPAddr))
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.HTTPAddr
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}
