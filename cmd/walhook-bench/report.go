package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// result is one scenario's figures; with --json it is printed as one line.
type result struct {
	Scenario        string  `json:"scenario"`
	Changes         int64   `json:"changes"`
	Transactions    int64   `json:"transactions"`
	Concurrency     int     `json:"concurrency"`
	LogLevel        string  `json:"log_level"`
	LoadSeconds     float64 `json:"load_seconds"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	TimeToFirstMs   float64 `json:"time_to_first_delivery_ms,omitempty"`
	P50Ms           float64 `json:"latency_p50_ms,omitempty"`
	P95Ms           float64 `json:"latency_p95_ms,omitempty"`
	P99Ms           float64 `json:"latency_p99_ms,omitempty"`
	MaxMs           float64 `json:"latency_max_ms,omitempty"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	CPUPer1000      float64 `json:"cpu_seconds_per_1000_events"`
	MeanBodyBytes   float64 `json:"mean_body_bytes"`
	Connections     int64   `json:"receiver_connections"`
	Expected        int64   `json:"expected"`
	Received        int64   `json:"received"`
	Missing         int64   `json:"missing"`
	Duplicates      int64   `json:"duplicates"`
	OutOfOrder      int64   `json:"order_violations"`
	BadSignatures   int64   `json:"bad_signatures"`
	Unexpected      int64   `json:"unexpected"`
	HTTPWorkers     int     `json:"http_ceiling_connections,omitempty"`
	HTTPPerSecond   float64 `json:"http_ceiling_per_second,omitempty"`
	HTTPRatio       float64 `json:"walhook_to_http_ceiling,omitempty"`
	HTTPBadSig      int64   `json:"http_ceiling_bad_signatures,omitempty"`
	DecodePerSecond float64 `json:"decode_ceiling_per_second,omitempty"`
	DecodeRatio     float64 `json:"walhook_to_decode_ceiling,omitempty"`
	// Payload queries (drain-payload): runs, their total time, the order
	// events they built bodies for, and fallbacks to the row image.
	PayloadQueries      int64   `json:"payload_queries,omitempty"`
	PayloadQuerySeconds float64 `json:"payload_query_seconds,omitempty"`
	PayloadEvents       int64   `json:"payload_events,omitempty"`
	PayloadFallbacks    int64   `json:"payload_fallbacks,omitempty"`
}

func (r *result) setOutcome(o outcome) {
	r.Expected, r.Received, r.Missing, r.Duplicates = o.Expected, o.Received, o.Missing, o.Duplicates
	r.OutOfOrder, r.BadSignatures, r.Unexpected = o.OutOfOrder, o.BadSig, o.Unexpected
}

func (r *result) cpu(d time.Duration, events int64) {
	r.CPUSeconds = d.Seconds()
	if events > 0 {
		r.CPUPer1000 = d.Seconds() / float64(events) * 1000
	}
}

// div is a / b, 0 when b is 0.
func div(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func printJSON(w io.Writer, r result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bench: encode result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printTable prints the results as a table, one column per scenario.
func printTable(w io.Writer, opts options, results []result) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(r result) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	num := func(v float64, format string) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	row("", func(r result) string { return r.Scenario })
	row("walhook / HTTP ceiling", func(r result) string { return num(r.HTTPRatio, "%.2f") })
	row("changes", func(r result) string { return fmt.Sprint(r.Changes) })
	row("load (s)", func(r result) string { return fmt.Sprintf("%.1f", r.LoadSeconds) })
	row("walhook events/s", func(r result) string { return fmt.Sprintf("%.0f", r.EventsPerSecond) })
	row("wall (s)", func(r result) string { return fmt.Sprintf("%.1f", r.Seconds) })
	row("first delivery (ms)", func(r result) string { return num(r.TimeToFirstMs, "%.0f") })
	row("latency p50 (ms)", func(r result) string { return num(r.P50Ms, "%.1f") })
	row("latency p95 (ms)", func(r result) string { return num(r.P95Ms, "%.1f") })
	row("latency p99 (ms)", func(r result) string { return num(r.P99Ms, "%.1f") })
	row("latency max (ms)", func(r result) string { return num(r.MaxMs, "%.1f") })
	row("peak RSS (MiB)", func(r result) string { return fmt.Sprintf("%.1f", r.PeakRSSMiB) })
	row("CPU ms / event", func(r result) string { return fmt.Sprintf("%.3f", r.CPUPer1000) })
	row("mean body (bytes)", func(r result) string { return num(r.MeanBodyBytes, "%.0f") })
	row("receiver connections", func(r result) string { return fmt.Sprint(r.Connections) })
	row("HTTP ceiling/s", func(r result) string { return num(r.HTTPPerSecond, "%.0f") })
	row("decode ceiling/s", func(r result) string { return num(r.DecodePerSecond, "%.0f") })
	row("walhook / decode ceiling", func(r result) string { return num(r.DecodeRatio, "%.2f") })
	if slices.ContainsFunc(results, func(r result) bool { return r.PayloadQueries > 0 }) {
		row("payload queries", func(r result) string { return num(float64(r.PayloadQueries), "%.0f") })
		row("order events per query", func(r result) string { return num(div(r.PayloadEvents, r.PayloadQueries), "%.1f") })
		row("query ms (mean)", func(r result) string {
			return num(1000*r.PayloadQuerySeconds/float64(max(r.PayloadQueries, 1)), "%.2f")
		})
		row("query µs per order event", func(r result) string { return num(1e6*r.PayloadQuerySeconds/float64(max(r.PayloadEvents, 1)), "%.1f") })
		row("payload fallbacks", func(r result) string { return num(float64(r.PayloadFallbacks), "%.0f") })
	}
	row("expected", func(r result) string { return fmt.Sprint(r.Expected) })
	row("received", func(r result) string { return fmt.Sprint(r.Received) })
	row("missing", func(r result) string { return fmt.Sprint(r.Missing) })
	row("duplicates", func(r result) string { return fmt.Sprint(r.Duplicates) })
	row("order violations", func(r result) string { return fmt.Sprint(r.OutOfOrder) })
	row("bad signatures", func(r result) string { return fmt.Sprint(r.BadSignatures + r.HTTPBadSig) })
	row("unexpected", func(r result) string { return fmt.Sprint(r.Unexpected) })
	fmt.Fprintln(tw)
	_ = tw.Flush()
	hooks := "12 webhooks (drain-resource: 4 <resource>.* webhooks)"
	fmt.Fprintf(w, "walhook: delivery.concurrency %d per webhook, %s at one host, log.level %s (JSON, to a file).\n", opts.concurrency, hooks, opts.logLevel)
	fmt.Fprintf(w, "HTTP ceiling: a plain Go client, %d connections, signed POSTs of walhook's bodies to the same receiver; decode ceiling: pg_recvlogical, pgoutput proto 2.\n", opts.httpConns)
}
