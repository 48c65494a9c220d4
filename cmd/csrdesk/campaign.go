package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"csrdesk/campaigns"
	"csrdesk/templates"
)

// stringList is a flag that may be given several times.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// mail is what campaign commands and workers share, built once from the configuration.
type mail struct {
	layout    *templates.Mail
	transport campaigns.Transport
	worker    campaigns.WorkerConfig
}

// mailer reads the layout, the transport (SMTP, or .eml files without CSRDESK_SMTP_URL) and the DKIM key, so
// that a bad key or URL stops the start, not each message.
var errNoSecret = errors.New("CSRDESK_SECRET is required: it signs the unsubscribe and confirmation links in mails and staff " +
	"sessions, which must keep working across restarts and processes (make one with: head -c 32 /dev/urandom | base64)")

func mailer(cfg config) (mail, error) {
	var m mail
	var err error
	m.worker = campaigns.DefaultWorkerConfig()
	if cfg.Secret == "" {
		return m, errNoSecret
	}
	m.worker.Rate, m.worker.PublicURL, m.worker.Secret = cfg.MailRate, cfg.PublicURL, []byte(cfg.Secret)
	m.worker.Bounces = cfg.BounceAddress
	if cfg.ClaimIdle > 0 {
		m.worker.ClaimIdle = cfg.ClaimIdle
	}
	if cfg.RetryBase > 0 {
		m.worker.RetryBase = cfg.RetryBase
	}
	if cfg.ShutdownTimeout > 0 {
		// The worker gives up recording what it sent well within the stop's deadline, and says how much.
		m.worker.Drain = min(m.worker.Drain, cfg.ShutdownTimeout/2)
	}
	if cfg.DKIMKeyFile != "" {
		if m.worker.DKIM, err = campaigns.DKIM(cfg.DKIMKeyFile, cfg.DKIMDomain, cfg.DKIMSelector); err != nil {
			return m, err
		}
	}
	if m.layout, err = templates.MailLayout(); err != nil {
		return m, err
	}
	if cfg.SMTPURL == "" {
		m.transport = &campaigns.Folder{Dir: cfg.OutboxDir}
		return m, nil
	}
	if m.transport, err = campaigns.ParseSMTP(cfg.SMTPURL); err != nil {
		return m, fmt.Errorf("CSRDESK_SMTP_URL: %w", err)
	}
	return m, nil
}

func campaignCommand(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("campaign: want create, preview, test, start, pause, resume, cancel, status, failures or resend-failed")
	}
	op, args := args[0], args[1:]
	if op == "create" {
		return campaignCreate(ctx, cfg, args, stdout)
	}
	fl := flag.NewFlagSet("campaign "+op, flag.ContinueOnError)
	asJSON := fl.Bool("json", false, "print JSON")
	watch := fl.Bool("watch", false, "show a live progress bar until the campaign ends")
	subscriber := fl.String("subscriber", "", "preview as this subscriber")
	to := fl.String("to", "", "the address to send the test to")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fmt.Sprintf("campaign %s: want one campaign id", op))
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return usageError(fmt.Sprintf("campaign %s: %q is not a campaign id", op, pos[0]))
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		switch op {
		case "start", "pause", "resume", "cancel":
			c, err := s.Transition(ctx, id, op)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "campaign %d is %s\n", id, c.State)
			return nil
		case "status":
			return campaignStatus(ctx, s, id, *asJSON, *watch, stdout, stderr)
		case "failures":
			fails, err := s.Failures(ctx, id)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RECIPIENT\tCODE\tREASON")
			for _, f := range fails {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", f.Email, f.Code, f.Reason)
			}
			return tw.Flush()
		case "resend-failed":
			n, err := s.ResendFailed(ctx, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "campaign %d: %d failed recipients queued again\n", id, n)
			return nil
		case "preview", "test":
			m, err := mailer(cfg)
			if err != nil {
				return err
			}
			if op == "preview" {
				r, err := s.Preview(ctx, id, *subscriber, m.layout, m.worker)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "Subject: %s\n\n%s", r.Subject, r.Text)
				return nil
			}
			if *to == "" {
				return usageError("campaign test: --to ADDRESS is required")
			}
			if err := s.SendTest(ctx, id, *to, m.layout, m.transport, m.worker); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "test of campaign %d sent to %s\n", id, *to)
			return nil
		}
		return usageError(fmt.Sprintf("campaign: unknown command %q", op))
	})
}

func campaignCreate(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("campaign create", flag.ContinueOnError)
	name := fl.String("name", "", "the campaign's name")
	subject := fl.String("subject", "", "the subject (a body variant may override it per language)")
	body := fl.String("body-file", "", "the Markdown body; variants beside it: F.de.md, F.it.md, ...")
	from := fl.String("from", cfg.MailFrom, "the sender address")
	sendAt := fl.String("send-at", "", "when to send: 2026-12-01T09:00:00+01:00, or 2026-12-01 09:00 (UTC)")
	segment := fl.String("segment", "", `only subscribers this expression selects, e.g. 'Country == "DE" && Language in ["de","en"]'`)
	event := fl.String("event", "", "an event (csrdesk events) every mail invites to, with its .ics file")
	before := fl.Duration("send-before", 0, "with --event: send this long before the event starts, e.g. 24h (a reminder)")
	var lists stringList
	fl.Var(&lists, "list", "a list to send to (repeat for more)")
	if _, err := parseFlags(fl, args); err != nil {
		return err
	}
	if *name == "" || *subject == "" || *body == "" || len(lists) == 0 {
		return usageError("campaign create: --name, --subject, --body-file and at least one --list are required")
	}
	var at time.Time
	if *sendAt != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, *sendAt); err != nil {
			if at, err = time.Parse("2006-01-02 15:04", *sendAt); err != nil {
				return usageError(fmt.Sprintf("campaign create: --send-at %q: want 2026-12-01T09:00:00+01:00 or 2026-12-01 09:00", *sendAt))
			}
		}
	}
	if *before != 0 && (*event == "" || *sendAt != "") {
		return usageError("campaign create: --send-before needs --event, and replaces --send-at")
	}
	content, err := campaigns.LoadContent(*body, *subject)
	if err != nil {
		return err
	}
	layout, err := templates.MailLayout()
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		c, err := s.CreateCampaign(ctx, campaigns.Campaign{Name: *name, Lists: lists, Segment: *segment, From: *from, Content: content, SendAt: at, Event: *event, SendBefore: *before},
			func(c campaigns.Content) error { _, err := campaigns.Compile(c, layout); return err })
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, c.ID)
		return nil
	})
}

func campaignStatus(ctx context.Context, s *campaigns.Store, id int64, asJSON, watch bool, stdout, stderr io.Writer) error {
	st, err := s.CampaignStatus(ctx, id)
	if err != nil {
		return err
	}
	if watch {
		bar := progressbar.NewOptions64(max(st.Total, 1), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription(fmt.Sprintf("campaign %d", id)),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond))
		for st.State == campaigns.Running || st.State == campaigns.Scheduled {
			bar.ChangeMax64(max(st.Total, 1))
			bar.Set64(st.Sent + st.Failed)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
			if st, err = s.CampaignStatus(ctx, id); err != nil {
				return err
			}
		}
		bar.Set64(st.Sent + st.Failed)
		fmt.Fprintln(stderr)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "campaign %d: %s; %d recipients: %d sent, %d failed, %d pending, %d retrying\n",
		st.ID, st.State, st.Total, st.Sent, st.Failed, st.Pending, st.Retrying)
	return nil
}
