package cdc

import (
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the replication reader's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	connected    prometheus.Gauge
	streaming    prometheus.Gauge
	standby      prometheus.Gauge
	reconnects   prometheus.Counter
	transactions prometheus.Counter
	changes      prometheus.Counter
	bytesRead    prometheus.Counter
	serverLSN    prometheus.Gauge
	confirmedLSN prometheus.Gauge
	lagBytes     prometheus.Gauge
	// missingTables and readded are the PublicationWatch's.
	missingTables prometheus.Gauge
	readded       prometheus.Counter
}

// NewMetrics creates the reader's metrics and registers them with reg.
// It panics if they are already registered there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_connected",
			Help: "Whether the replication connection to PostgreSQL is open (1) or not (0).",
		}),
		streaming: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_streaming",
			Help: "Whether this instance is streaming the replication slot (1) or not (0).",
		}),
		standby: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_standby",
			Help: "Whether this instance is waiting as a standby because another process holds the replication slot (1) or not (0).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_replication_reconnects_total",
			Help: "Number of times the replication connection was lost or could not be opened and was tried again.",
		}),
		transactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_replication_transactions_total",
			Help: "Number of committed transactions with changes handed out by the replication reader.",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_replication_changes_total",
			Help: "Number of row changes and logical messages decoded from the replication stream.",
		}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_replication_bytes_read_total",
			Help: "Number of bytes of WAL data received from the replication stream.",
		}),
		serverLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_server_lsn",
			Help: "The latest WAL end position reported by the server, as a number.",
		}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_confirmed_lsn",
			Help: "The position last confirmed to the server as settled, as a number.",
		}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_replication_lag_bytes",
			Help: "Bytes of WAL between the server's latest reported position and the confirmed position.",
		}),
		missingTables: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walhook_publication_missing_tables",
			Help: "Mapped tables the publication does not include (dropped, or dropped and created again), so their changes are not captured.",
		}),
		readded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walhook_publication_tables_readded_total",
			Help: "Mapped tables walhook added back to its own publication after they were dropped and created again.",
		}),
	}
	reg.MustRegister(m.connected, m.streaming, m.standby, m.reconnects, m.transactions,
		m.changes, m.bytesRead, m.serverLSN, m.confirmedLSN, m.lagBytes, m.missingTables, m.readded)
	return m
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *Metrics) setConnected(b bool) {
	if m != nil {
		m.connected.Set(boolGauge(b))
	}
}

func (m *Metrics) setState(s State) {
	if m != nil {
		m.streaming.Set(boolGauge(s == Streaming))
		m.standby.Set(boolGauge(s == Standby))
	}
}

func (m *Metrics) reconnect() {
	if m != nil {
		m.reconnects.Inc()
	}
}

func (m *Metrics) transaction() {
	if m != nil {
		m.transactions.Inc()
	}
}

func (m *Metrics) addChanges(n int) {
	if m != nil && n > 0 {
		m.changes.Add(float64(n))
	}
}

func (m *Metrics) addBytes(n int) {
	if m != nil {
		m.bytesRead.Add(float64(n))
	}
}

// positions records the server's and the confirmed positions and the lag
// between them.
func (m *Metrics) positions(server, confirmed pglogrepl.LSN) {
	if m == nil {
		return
	}
	m.serverLSN.Set(float64(server))
	m.confirmedLSN.Set(float64(confirmed))
	lag := 0.0
	if server > confirmed {
		lag = float64(server - confirmed)
	}
	m.lagBytes.Set(lag)
}

func (m *Metrics) setMissingTables(n int) {
	if m != nil {
		m.missingTables.Set(float64(n))
	}
}

func (m *Metrics) tableReadded() {
	if m != nil {
		m.readded.Inc()
	}
}
