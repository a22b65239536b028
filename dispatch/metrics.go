package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/webhook"
)

// Metrics are the dispatcher's collectors.
type Metrics struct {
	Deliveries          *prometheus.CounterVec
	Attempts            *prometheus.CounterVec
	AttemptDuration     *prometheus.HistogramVec
	ConsecutiveFailures *prometheus.GaugeVec
	Status              *prometheus.GaugeVec
	Disables            *prometheus.CounterVec
	Pings               *prometheus.CounterVec
	Events              *prometheus.CounterVec
	QueueDepth          *prometheus.GaugeVec
	InFlight            prometheus.Gauge
	Parked              *prometheus.GaugeVec
	SettledLSN          prometheus.Gauge
	LagSeconds          prometheus.Gauge
	Transactions        prometheus.Counter
	Filtered            *prometheus.CounterVec
	FilterErrors        *prometheus.CounterVec
}

// NewMetrics creates the dispatcher's collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_deliveries_total",
			Help: "Deliveries by webhook, topic and outcome (success, failed, retried, parked, dropped, skipped).",
		}, []string{"webhook", "topic", "outcome"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_delivery_attempts_total",
			Help: "HTTP delivery attempts by webhook and response status class (2xx, 3xx, 4xx, 5xx, error).",
		}, []string{"webhook", "code"}),
		AttemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "walhook_delivery_attempt_duration_seconds",
			Help:    "Duration of HTTP delivery attempts, from sending the request to reading the response.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"webhook"}),
		ConsecutiveFailures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "walhook_webhook_consecutive_failures",
			Help: "Consecutive failed deliveries of a webhook; it is disabled when this exceeds delivery.max_failures.",
		}, []string{"webhook"}),
		Status: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "walhook_webhook_status",
			Help: "A webhook's status: 1 for its current status (active, paused, disabled), 0 for the others.",
		}, []string{"webhook", "status"}),
		Disables: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_webhook_disables_total",
			Help: "Times a webhook was disabled automatically after failed deliveries or a 410 Gone.",
		}, []string{"webhook"}),
		Pings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_pings_total",
			Help: "Activation pings by webhook and result (success when the receiver answered 200, failed otherwise).",
		}, []string{"webhook", "result"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_events_total",
			Help: "Events decoded from the replication stream by topic.",
		}, []string{"topic"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "walhook_queue_depth",
			Help: "Deliveries queued in memory for a webhook, waiting for a free delivery lane.",
		}, []string{"webhook"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_deliveries_in_flight",
			Help: "HTTP delivery attempts in progress.",
		}),
		Parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "walhook_parked_deliveries",
			Help: "Deliveries parked in the state schema for a webhook, waiting for a retry or for the webhook to be re-enabled.",
		}, []string{"webhook"}),
		SettledLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_settled_lsn",
			Help: "End position of the newest transaction settled for every webhook, as a number.",
		}),
		LagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_lag_seconds",
			Help: "Age of the oldest unsettled transaction (now minus its commit time); 0 when nothing is pending.",
		}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_transactions_routed_total",
			Help: "Committed transactions routed to webhooks.",
		}),
	}
	m.Filtered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_events_filtered_total",
		Help: "Events a webhook's topic matched that its filter left out (false or failed): settled without a delivery.",
	}, []string{"webhook"})
	m.FilterErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_filter_errors_total",
		Help: "Evaluations of a webhook's filter that failed (a missing key, a type mismatch, ...), which count as no match.",
	}, []string{"webhook"})
	reg.MustRegister(m.Deliveries, m.Attempts, m.AttemptDuration, m.ConsecutiveFailures, m.Status, m.Disables,
		m.Pings, m.Events, m.QueueDepth, m.InFlight, m.Parked, m.SettledLSN, m.LagSeconds, m.Transactions,
		m.Filtered, m.FilterErrors)
	return m
}

// hookMetrics are one webhook's series, resolved once.
type hookMetrics struct {
	outcome  map[webhook.Outcome]prometheus.Counter
	duration prometheus.Observer
	attempts map[string]prometheus.Counter
	failures prometheus.Gauge
	disables prometheus.Counter
	queue    prometheus.Gauge
	parked   prometheus.Gauge
	// filtered and filterErrors count what the webhook's filter left out
	// and its failed evaluations.
	filtered     prometheus.Counter
	filterErrors prometheus.Counter
}

func (m *Metrics) forHook(id, topic string) *hookMetrics {
	h := &hookMetrics{
		outcome:  make(map[webhook.Outcome]prometheus.Counter, len(webhook.Outcomes)),
		attempts: make(map[string]prometheus.Counter, 5),
		duration: m.AttemptDuration.WithLabelValues(id),
		failures: m.ConsecutiveFailures.WithLabelValues(id),
		disables: m.Disables.WithLabelValues(id),
		queue:    m.QueueDepth.WithLabelValues(id),
		parked:   m.Parked.WithLabelValues(id),

		filtered:     m.Filtered.WithLabelValues(id),
		filterErrors: m.FilterErrors.WithLabelValues(id),
	}
	for _, o := range webhook.Outcomes {
		h.outcome[o] = m.Deliveries.WithLabelValues(id, topic, string(o))
	}
	for _, c := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
		h.attempts[c] = m.Attempts.WithLabelValues(id, c)
	}
	m.Pings.WithLabelValues(id, "success")
	m.Pings.WithLabelValues(id, "failed")
	return h
}

func (m *Metrics) setStatus(id string, status webhook.Status) {
	for _, s := range webhook.Statuses {
		v := 0.0
		if s == status {
			v = 1
		}
		m.Status.WithLabelValues(id, string(s)).Set(v)
	}
}

// forget removes a deleted webhook's series.
func (m *Metrics) forget(id, topic string) {
	for _, o := range webhook.Outcomes {
		m.Deliveries.DeleteLabelValues(id, topic, string(o))
	}
	for _, c := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
		m.Attempts.DeleteLabelValues(id, c)
	}
	for _, s := range webhook.Statuses {
		m.Status.DeleteLabelValues(id, string(s))
	}
	m.AttemptDuration.DeleteLabelValues(id)
	m.ConsecutiveFailures.DeleteLabelValues(id)
	m.Disables.DeleteLabelValues(id)
	m.QueueDepth.DeleteLabelValues(id)
	m.Parked.DeleteLabelValues(id)
	m.Filtered.DeleteLabelValues(id)
	m.FilterErrors.DeleteLabelValues(id)
	m.Pings.DeleteLabelValues(id, "success")
	m.Pings.DeleteLabelValues(id, "failed")
}
