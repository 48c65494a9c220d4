package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"
	"github.com/schollz/progressbar/v3"

	"csrdesk/bot"
	"csrdesk/bot/web"
	"csrdesk/campaigns"
	"csrdesk/internal/rdb"
)

// withStore connects to Redis for a command that works on subscribers and lists.
func withStore(ctx context.Context, cfg config, fn func(*campaigns.Store) error) error {
	rc, _, err := openRedis(ctx, cfg, newLogger(cfg, os.Stderr))
	if err != nil {
		return err
	}
	defer rc.Close()
	err = fn(campaigns.NewStore(rc))
	switch {
	case errors.Is(err, campaigns.ErrNotFound), errors.Is(err, campaigns.ErrExists), errors.Is(err, campaigns.ErrInvalid):
		return fmt.Errorf("%w", err)
	}
	return err
}

func listsCommand(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) >= 1 && args[0] == "create" {
		fl := flag.NewFlagSet("lists create", flag.ContinueOnError)
		public := fl.Bool("public", false, "offer the list on the subscribe form and in the preferences")
		title := fl.String("title", "", "the list's name for subscribers")
		pos, err := parseFlags(fl, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError("lists create: want one list name, e.g. csrdesk lists create events-2027 [--public --title \"Events 2027\"]")
		}
		return withStore(ctx, cfg, func(s *campaigns.Store) error {
			if err := s.CreateList(ctx, campaigns.List{Name: pos[0], Public: *public, Title: *title}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "list %s created\n", pos[0])
			return nil
		})
	}
	if len(args) > 0 {
		return usageError("lists: want no arguments (to show the lists) or create NAME")
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		lists, err := s.Lists(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LIST\tMEMBERS\tCREATED\tPUBLIC\tTITLE")
		for _, l := range lists {
			public := "no"
			if l.Public {
				public = "yes"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", l.Name, l.Members, l.Created.Format("2006-01-02"), public, l.Title)
		}
		return tw.Flush()
	})
}

func subscribersCommand(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("subscribers: want import FILE.csv --list NAME, export --list NAME, export EMAIL, delete EMAIL or subscribe EMAIL")
	}
	fl := flag.NewFlagSet("subscribers "+args[0], flag.ContinueOnError)
	var lists stringList
	fl.Var(&lists, "list", "the list (subscribe: repeat for more; none for every public list)")
	confirmed := fl.Bool("confirmed", false, "import: the rows have consented already (recorded as such); without it new subscribers must confirm")
	lang := fl.String("lang", "", "subscribe: the language of the confirmation mail and the mailings")
	name := fl.String("name", "", "subscribe: the person's name")
	pos, err := parseFlags(fl, args[1:])
	if err != nil {
		return err
	}
	switch {
	case args[0] == "export" && len(pos) == 1 && len(lists) == 0:
		return withStore(ctx, cfg, func(s *campaigns.Store) error {
			data, err := s.PersonalData(ctx, pos[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(data)
		})
	case args[0] == "delete":
		if len(pos) != 1 {
			return usageError("subscribers delete: want one address")
		}
		return withStore(ctx, cfg, func(s *campaigns.Store) error {
			if err := s.Erase(ctx, pos[0]); err != nil {
				return err
			}
			rc, err := rdb.Open(ctx, cfg.RedisURL)
			if err != nil {
				return err
			}
			defer rc.Close()
			n, err := forgetInChats(ctx, rc, pos[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s erased: lists, consent history, delivery records and %d chat messages or ticket lines; only a suppression hash is left, so imports skip it\n", pos[0], n)
			return nil
		})
	case args[0] == "invite":
		if len(pos) != 0 || len(lists) != 1 {
			return usageError("subscribers invite: want --list NAME")
		}
		return withSubscriptions(ctx, cfg, stderr, func(subs *campaigns.Subscriptions) error {
			bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("confirmation mails"),
				progressbar.OptionSetVisibility(isTerminal(stderr)), progressbar.OptionClearOnFinish())
			rep, err := subs.Invite(ctx, lists[0], func() { bar.Add(1) })
			bar.Finish()
			fmt.Fprintf(stdout, "%s: %d confirmation mails sent, %d members asked within the last week (not again), %d could not be sent\n",
				lists[0], rep.Sent, rep.Recent, rep.Failed)
			if err == nil && rep.Failed > 0 {
				return exitCode(1)
			}
			return err
		})
	case args[0] == "subscribe":
		if len(pos) != 1 {
			return usageError("subscribers subscribe: want one address, e.g. subscribers subscribe anna@example.it --lang it")
		}
		return withSubscriptions(ctx, cfg, stderr, func(subs *campaigns.Subscriptions) error {
			err := subs.Subscribe(ctx, campaigns.Subscription{Email: pos[0], Name: *name, Language: *lang, Lists: lists, Via: "staff", Source: "csrdesk subscribers subscribe"})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "confirmation mail sent to %s: they are subscribed once they open its link\n", pos[0])
			return nil
		})
	}
	if len(lists) != 1 {
		return usageError(fmt.Sprintf("subscribers %s: one --list NAME is required", args[0]))
	}
	list := &lists[0]
	switch args[0] {
	case "import":
		if len(pos) != 1 {
			return usageError("subscribers import: want one CSV file")
		}
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		st, _ := f.Stat()
		bar := progressbar.NewOptions64(st.Size(), progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("importing"), progressbar.OptionSetVisibility(isTerminal(stderr)), progressbar.OptionClearOnFinish())
		return withStore(ctx, cfg, func(s *campaigns.Store) error {
			opts := campaigns.ImportOptions{List: *list, Confirmed: *confirmed, Source: filepath.Base(pos[0]), Progress: func(n int) { bar.Add(n) }}
			rep, err := s.Import(ctx, f, opts)
			bar.Finish()
			if rep != nil {
				for _, p := range rep.Problems {
					fmt.Fprintf(stdout, "%s:%s: not imported\n", pos[0], p[len("line "):])
				}
				for _, w := range rep.Warnings {
					fmt.Fprintf(stdout, "%s:%s\n", pos[0], w[len("line "):])
				}
				unchanged := ""
				if rep.Unchanged > 0 {
					unchanged = fmt.Sprintf(", %d already there as given", rep.Unchanged)
				}
				fmt.Fprintf(stdout, "%s: %d added, %d updated%s, %d not imported\n", *list, rep.Added, rep.Updated, unchanged, rep.NotImported)
				if rep.Added > 0 && !*confirmed {
					fmt.Fprintf(stdout, "the %d new subscribers are unconfirmed: they receive no campaign until they confirm; send them the confirmation mail with: csrdesk subscribers invite --list %s (or import with --confirmed if they have consented already)\n", rep.Added, *list)
				}
			}
			var stopped *campaigns.ImportStopped
			if errors.As(err, &stopped) {
				// Where it stopped, in the file:line form of the problems, and what to do about it.
				return fmt.Errorf("%s:%d: import stopped here, %d rows stored before it; run the same command again to finish it (rows already stored are not added twice): %w",
					pos[0], stopped.Line, stopped.Stored, stopped.Err)
			}
			if err != nil {
				return err
			}
			if len(rep.Problems) > 0 {
				return exitCode(1)
			}
			return nil
		})
	case "export":
		if len(pos) != 0 {
			return usageError("subscribers export: want only --list NAME")
		}
		return withStore(ctx, cfg, func(s *campaigns.Store) error { return s.Export(ctx, *list, stdout) })
	}
	return usageError(fmt.Sprintf("subscribers: unknown command %q (want import, export, delete or subscribe)", args[0]))
}

// forgetInChats erases an address from what the help desk holds: conversation histories, tickets and web chats.
func forgetInChats(ctx context.Context, rc redis.UniversalClient, email string) (int, error) {
	n, err := bot.Forget(ctx, rc, email)
	if err != nil {
		return n, err
	}
	m, err := web.Forget(ctx, rc, email)
	return n + m, err
}

// withSubscriptions sets up what sends confirmation mails, for a command that sends them.
func withSubscriptions(ctx context.Context, cfg config, stderr io.Writer, fn func(*campaigns.Subscriptions) error) error {
	m, err := mailer(cfg)
	if err != nil {
		return err
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		subs, err := campaigns.NewSubscriptions(s, m.transport, campaigns.SubscriptionsConfig{PublicURL: cfg.PublicURL, From: cfg.MailFrom, Secret: m.worker.Secret},
			slog.New(slog.NewTextHandler(stderr, nil)))
		if err != nil {
			return err
		}
		return fn(subs)
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
