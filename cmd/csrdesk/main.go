// Command csrdesk is the CSR help desk and dissemination mailer: `csrdesk serve` runs it all; the other
// subcommands administer the knowledge base (and, later, subscribers and campaigns).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // office hours name time zones; not every machine has the zone files
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a clean stop; restoring the default then lets a second one end the process at
	// once, for an operator who will not wait for the drain.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ec exitCode
		if !errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "csrdesk:", err)
		}
		os.Exit(exitStatus(err))
	}
}
