package main

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"csrdesk/bot"
	"csrdesk/campaigns"
)

// queues exports, at each scrape, what the operator watches in trouble: whether Redis answers, the chat replies
// waiting for a platform, and where each active campaign's recipients stand. They are read from Redis, so every
// process shows the same figures.
type queues struct {
	engine *bot.Engine
	store  *campaigns.Store
}

var (
	redisUpDesc = prometheus.NewDesc("csrdesk_redis_up", "1 when Redis answered the scrape's queries, else 0.", nil, nil)
	outboxDesc  = prometheus.NewDesc("csrdesk_outbox_pending", "Chat replies waiting for delivery, by channel.", []string{"channel"}, nil)
	recipDesc   = prometheus.NewDesc("csrdesk_campaign_recipients", "Recipients of active campaigns by state: sent, failed, pending, retrying.",
		[]string{"campaign", "state"}, nil)
	stateDesc = prometheus.NewDesc("csrdesk_campaign_state", "1 for each active campaign's state: scheduled, running, paused.", []string{"campaign", "state"}, nil)
)

func (q queues) Describe(ch chan<- *prometheus.Desc) {
	ch <- redisUpDesc
	ch <- outboxDesc
	ch <- recipDesc
	ch <- stateDesc
}

func (q queues) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 1.0
	defer func() { ch <- prometheus.MustNewConstMetric(redisUpDesc, prometheus.GaugeValue, up) }()
	pending, err := q.engine.Pending(ctx)
	if err != nil {
		up = 0
		return
	}
	for name, n := range pending {
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(n), name)
	}
	active, err := q.store.ActiveStatuses(ctx)
	if err != nil {
		up = 0
		return
	}
	for _, st := range active {
		id := strconv.FormatInt(st.ID, 10)
		for state, n := range map[string]int64{"sent": st.Sent, "failed": st.Failed, "pending": st.Pending, "retrying": st.Retrying} {
			ch <- prometheus.MustNewConstMetric(recipDesc, prometheus.GaugeValue, float64(n), id, state)
		}
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, 1, id, st.State)
	}
}
