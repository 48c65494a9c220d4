package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"csrdesk/internal/rdb"
)

// openRedis connects to Redis and joins the data set it holds, moving keys an earlier version stored under
// another name first. Every command that touches Redis starts here, so that none of them writes into a database
// that lost its data without noticing (see rdb.Dataset).
func openRedis(ctx context.Context, cfg config, log *slog.Logger) (redis.UniversalClient, *rdb.Dataset, error) {
	rc, err := rdb.Open(ctx, cfg.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	ds, err := rdb.Join(ctx, rc, log)
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	return rc, ds, nil
}

// datasetCheck is how often a long-running process looks whether Redis still holds its data set.
const datasetCheck = 2 * time.Second

// healthHandler answers GET /healthz: "ok", or 503 with the reason when Redis is unreachable, refuses writes
// (full, or a read-only replica) or lost the data this process knew.
func healthHandler(ds *rdb.Dataset) http.HandlerFunc {
	host, _ := os.Hostname()
	who := fmt.Sprintf("%s-%d", host, os.Getpid())
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ds.Health(ctx, who); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}
}

var (
	redisWritableDesc = prometheus.NewDesc("csrdesk_redis_writable", "1 when Redis took this scrape's test write, else 0 (unreachable, at maxmemory, read-only).", nil, nil)
	redisLostDesc     = prometheus.NewDesc("csrdesk_redis_data_lost", "1 once this process has seen Redis lose the data set it knew, until it restarts.", nil, nil)
)

// redisHealth exports the health check as metrics.
type redisHealth struct{ ds *rdb.Dataset }

func (h redisHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- redisWritableDesc
	ch <- redisLostDesc
}

func (h redisHealth) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	writable, lost := 1.0, 0.0
	if err := h.ds.Health(ctx, "metrics"); err != nil && !errors.Is(err, rdb.ErrDataLost) {
		writable = 0
	}
	if h.ds.Lost() != "" {
		lost = 1
	}
	ch <- prometheus.MustNewConstMetric(redisWritableDesc, prometheus.GaugeValue, writable)
	ch <- prometheus.MustNewConstMetric(redisLostDesc, prometheus.GaugeValue, lost)
}
