package bot

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the help desk's indicators, exported on /metrics.
type Metrics struct {
	Questions  *prometheus.CounterVec // by decision and language
	Feedback   *prometheus.CounterVec // by verdict: helped, not_helped
	Tickets    *prometheus.CounterVec // by event: opened, claimed, resolved, reminded
	FirstReply prometheus.Histogram   // seconds from a ticket's opening to staff's first reply
	Rating     prometheus.Histogram   // the ratings people gave, 1 to 5
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Questions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrdesk_questions_total", Help: "Questions asked, by the matcher's decision (answer, suggest, escalate, out_of_scope, small_talk) and the conversation's language.",
		}, []string{"decision", "lang"}),
		Feedback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrdesk_answer_feedback_total", Help: "Feedback on answers: helped (the button, or thanks after an answer) or not_helped.",
		}, []string{"verdict"}),
		Tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrdesk_tickets_total", Help: "Ticket events: opened, claimed, resolved, reminded (unclaimed too long).",
		}, []string{"event"}),
		FirstReply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "csrdesk_ticket_first_reply_seconds", Help: "Time from a ticket's opening to staff's first reply.",
			Buckets: []float64{60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600},
		}),
		Rating: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "csrdesk_ticket_rating", Help: "Ratings of resolved tickets, 1 (poor) to 5 (excellent).",
			Buckets: []float64{1, 2, 3, 4, 5},
		}),
	}
	reg.MustRegister(m.Questions, m.Feedback, m.Tickets, m.FirstReply, m.Rating)
	return m
}
