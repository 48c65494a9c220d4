package main

import (
	"context"
	"io"

	"csrdesk/campaigns"
)

// worker delivers campaigns until ctx is done: csrdesk worker, for running workers apart from the help desk.
// It stops like serve: the worker finishes the messages it has taken, within CSRDESK_SHUTDOWN_TIMEOUT, and
// only then is Redis closed.
func worker(ctx context.Context, cfg config, args []string, stderr io.Writer) error {
	if len(args) > 0 {
		return usageError("worker takes no arguments; configure it with CSRDESK_* variables")
	}
	log := newLogger(cfg, stderr)
	rc, ds, err := openRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	m, err := mailer(cfg)
	if err != nil {
		rc.Close()
		return err
	}
	w := campaigns.NewWorker(campaigns.NewStore(rc), m.transport, m.layout, m.worker, log)
	lc := newLifecycle(ctx, cfg.ShutdownTimeout, log)
	lc.OnAbandon("campaign worker", abandonedMail)
	lc.Go("campaign worker", w.Run)
	lc.Go("redis data set", func(ctx context.Context) error { ds.Watch(ctx, datasetCheck); return nil })
	log.Info("worker delivering campaigns", "smtp", cfg.SMTPURL != "", "outbox_dir", cfg.OutboxDir, "rate", cfg.MailRate)
	<-lc.ctx.Done()
	log.Info("shutting down", "cause", context.Cause(lc.ctx), "timeout", cfg.ShutdownTimeout)
	return stop(lc, rc, log)
}
