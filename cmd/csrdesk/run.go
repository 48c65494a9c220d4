package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `csrdesk: CSR help desk and dissemination mailer

Usage:
  csrdesk serve                       run the help desk (HTTP server) on Redis
  csrdesk faq check [DIR]             validate a knowledge base folder (default: the embedded one)
  csrdesk faq ask [--lang xx] [--json] "question"
                                      show the matcher's decision for a question
  csrdesk faq eval [--calibrate] FILE score the matcher on a labelled question set
  csrdesk lists [create NAME [--public] [--title T]]
                                      show the mailing lists, or create one (public: on the subscribe form)
  csrdesk subscribers import FILE.csv --list NAME [--confirmed]
                                      import subscribers (header row; email, name, company, country,
                                      language, role, and any other columns as attributes); new ones are
                                      unconfirmed unless --confirmed vouches for their consent
  csrdesk subscribers export --list NAME
                                      write a list's subscribers as CSV
  csrdesk subscribers subscribe EMAIL [--list L] [--lang xx] [--name N]
                                      send the double opt-in confirmation mail
  csrdesk subscribers invite --list NAME
                                      send it to the list's unconfirmed members (not again within a week)
  csrdesk subscribers export EMAIL    everything held about an address, as JSON
  csrdesk subscribers delete EMAIL    erase an address everywhere (a suppression hash stays)
  csrdesk bounces FILE.eml|DIR ...    apply bounce reports (DSN), complaints (ARF) and unsubscribe mails
  csrdesk events [create|update ID [--notify]|show ID [--ics]] ...
                                      events that campaigns invite to, with their calendar file; an update
                                      moves reminders, and --notify mails it to everybody sent the event
  csrdesk campaign create --name N --subject S --body-file F.md --list L [--list L2] [--send-at T] [--from A]
                      [--event ID [--send-before 24h]] [--segment EXPR]
  csrdesk campaign preview ID [--subscriber EMAIL] | test ID --to ADDR
  csrdesk campaign start|pause|resume|cancel ID
  csrdesk campaign status ID [--json] [--watch] | failures ID | resend-failed ID
  csrdesk worker                      deliver campaigns (serve runs one too)

Configuration comes from CSRDESK_* environment variables (see README.md).
`

// exitCode is an error that only sets the exit status: what went wrong was already printed.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func exitStatus(err error) int {
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError is a mistake in the command line.
type usageError string

func (e usageError) Error() string { return string(e) }

// run is csrdesk without its process: tests call it with their own arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cfg, err := parseConfig(getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "serve":
		return serve(ctx, cfg, args[1:], stderr)
	case "faq":
		return faqCommand(cfg, args[1:], stdout, stderr)
	case "lists":
		return listsCommand(ctx, cfg, args[1:], stdout)
	case "subscribers":
		return subscribersCommand(ctx, cfg, args[1:], stdout, stderr)
	case "campaign":
		return campaignCommand(ctx, cfg, args[1:], stdout, stderr)
	case "worker":
		return worker(ctx, cfg, args[1:], stderr)
	case "events":
		return eventsCommand(ctx, cfg, args[1:], stdout)
	case "bounces":
		return bouncesCommand(ctx, cfg, args[1:], stdout)
	}
	return usageError(fmt.Sprintf("unknown command %q (try csrdesk help)", args[0]))
}

// parseFlags parses flags that may come before, between or after the positional arguments, and returns the
// positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError(fmt.Sprintf("%s: %v", fs.Name(), err))
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
		if pos[len(pos)-1] == "--" {
			return append(pos[:len(pos)-1], args...), nil
		}
	}
}

func join(args []string) string { return strings.Join(args, " ") }
