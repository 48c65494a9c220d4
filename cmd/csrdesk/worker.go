package main

import (
	"context"
	"io"

	"csrdesk/campaigns"
)

// worker delivers campaigns until ctx is done: csrdesk worker, for running workers apart from the help desk.
func worker(ctx context.Context, cfg config, args []string, stderr io.Writer) error {
	if len(args) > 0 {
		return usageError("worker takes no arguments; configure it with CSRDESK_* variables")
	}
	log := newLogger(cfg, stderr)
	rc, ds, err := openRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rc.Close()
	go ds.Watch(ctx, datasetCheck)
	m, err := mailer(cfg)
	if err != nil {
		return err
	}
	w := campaigns.NewWorker(campaigns.NewStore(rc), m.transport, m.layout, m.worker, log)
	log.Info("worker delivering campaigns", "smtp", cfg.SMTPURL != "", "outbox_dir", cfg.OutboxDir, "rate", cfg.MailRate)
	return w.Run(ctx)
}
