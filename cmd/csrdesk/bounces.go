package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"csrdesk/campaigns"
)

// bouncesCommand applies bounce reports, complaints and unsubscribe mails saved as files: each FILE, and every
// .eml file in each DIR, which then moves to DIR/processed so that running it again applies nothing twice.
// Messages that are none of these stay where they are, for a person to read.
func bouncesCommand(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError("bounces: want .eml files or folders of them, e.g. csrdesk bounces /var/mail/bounces/new")
	}
	if cfg.Secret == "" {
		return errors.New("bounces: CSRDESK_SECRET is required to check the tokens of unsubscribe mails")
	}
	return withStore(ctx, cfg, func(s *campaigns.Store) error {
		in := &campaigns.Inbound{Store: s, Secret: []byte(cfg.Secret), HardBounces: campaigns.DefaultWorkerConfig().HardBounces}
		failed := 0
		apply := func(file, done string) {
			f, err := os.Open(file)
			if err != nil {
				fmt.Fprintf(stdout, "%s: %v\n", file, err)
				failed++
				return
			}
			lines, err := in.Apply(ctx, f)
			f.Close()
			switch {
			case errors.Is(err, campaigns.ErrNotBounce):
				fmt.Fprintf(stdout, "%s: not a bounce, complaint or unsubscribe mail: left for a person\n", file)
				return
			case err != nil:
				fmt.Fprintf(stdout, "%s: %v\n", file, err)
				failed++
				return
			}
			for _, l := range lines {
				fmt.Fprintf(stdout, "%s: %s\n", file, l)
			}
			if done != "" {
				if err := os.MkdirAll(done, 0o755); err == nil {
					os.Rename(file, filepath.Join(done, filepath.Base(file)))
				}
			}
		}
		for _, arg := range args {
			st, err := os.Stat(arg)
			if err != nil {
				fmt.Fprintf(stdout, "%v\n", err)
				failed++
				continue
			}
			if !st.IsDir() {
				apply(arg, "")
				continue
			}
			entries, err := os.ReadDir(arg)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if !e.IsDir() && strings.HasSuffix(e.Name(), ".eml") {
					apply(filepath.Join(arg, e.Name()), filepath.Join(arg, "processed"))
				}
			}
		}
		if failed > 0 {
			return exitCode(1)
		}
		return nil
	})
}
