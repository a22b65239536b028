// Package route is the stage between the replication stream and delivery:
// it turns each committed transaction's changes (cdc batches) into topic
// events with their payloads (topics), coalesces a transaction's changes
// per row and topic, and hands them to the dispatcher as dispatch batches.
// It is where the replication protocol ends: dispatch never sees it.
package route

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// Options configure a Router.
type Options struct {
	Mapper *topics.Mapper
	// Coalesce keeps one event per row, topic and transaction (SPEC §5);
	// transactions of more than CoalesceMax changes are passed on change
	// by change so memory stays bounded.
	Coalesce    bool
	CoalesceMax int
	Logger      *slog.Logger
	Metrics     *Metrics
	// Bodies, if set, builds the bodies of created and updated events of
	// resources with a payload_query, once per dispatch batch.
	Bodies Bodies
	// Wanted, if set, tells whether any webhook will receive an event
	// (after its filter); bodies are built only for wanted events.
	Wanted func(*dispatch.Event) bool
}

// Metrics are the routing stage's collectors.
type Metrics struct {
	OmittedColumns *prometheus.CounterVec
}

// NewMetrics creates the routing stage's collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		OmittedColumns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_payload_omitted_columns_total",
			Help: "Columns left out of a payload because the server sent an unchanged TOASTed value without the old row (set REPLICA IDENTITY FULL).",
		}, []string{"resource"}),
	}
	reg.MustRegister(m.OmittedColumns)
	return m
}

// Router maps and coalesces transactions. Run it once.
type Router struct {
	opts     Options
	log      *slog.Logger
	degraded degraded
}

// New returns a Router.
func New(opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CoalesceMax <= 0 {
		opts.CoalesceMax = 10000
	}
	return &Router{opts: opts, log: opts.Logger}
}

// txn is the transaction being routed.
type txn struct {
	commit   state.LSN
	next     uint32 // first change index not routed yet
	changes  int
	buffered []*dispatch.Event // held for coalescing until the transaction ends
	chunked  bool              // too big to coalesce: passed on batch by batch
}

// Run reads batches from in and sends dispatch batches to out until ctx is
// done or in is closed; it closes out when it returns. A change walhook
// cannot encode stops it with an error naming the transaction and change:
// an event is never dropped silently.
func (r *Router) Run(ctx context.Context, in <-chan *cdc.Batch, out chan<- *dispatch.Batch) error {
	defer close(out)
	var cur *txn
	var lastCommit state.LSN
	send := func(b *dispatch.Batch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var b *cdc.Batch
		select {
		case <-ctx.Done():
			return nil
		case bb, ok := <-in:
			if !ok {
				return nil
			}
			b = bb
		}
		commit := state.LSN(b.CommitLSN)
		// A reconnect resends what was not confirmed: skip what was routed.
		if commit < lastCommit || commit == lastCommit && cur == nil {
			continue
		}
		if cur != nil && cur.commit != commit {
			// The connection dropped inside a transaction and a later one
			// arrived: impossible with pgoutput; refuse to guess.
			return fmt.Errorf("route: transaction %s was cut off before its end", cur.commit)
		}
		if cur == nil {
			cur = &txn{commit: commit}
		}
		events, err := r.mapBatch(cur, b)
		if err != nil {
			return err
		}
		db := &dispatch.Batch{Commit: commit, CommitTime: b.CommitTime, Last: b.Last}
		switch {
		case !r.opts.Coalesce || cur.chunked:
			db.Events = events
		case cur.changes > r.opts.CoalesceMax:
			// Too big to hold: what is held goes on as it is, and so does
			// the rest of the transaction.
			cur.chunked = true
			db.Events = append(cur.buffered, events...)
			cur.buffered = nil
			r.log.Debug("transaction too big to coalesce: delivered change by change",
				"commit_lsn", commit.String(), "coalesce_max", r.opts.CoalesceMax)
		default:
			cur.buffered = append(cur.buffered, events...)
			if !b.Last {
				continue
			}
			db.Events = Coalesce(cur.buffered)
		}
		if b.Last {
			db.End = state.LSN(b.EndLSN)
			lastCommit, cur = commit, nil
		}
		if !r.buildBodies(ctx, db.Events) || !send(db) {
			return nil
		}
	}
}

// mapBatch maps b's changes not routed yet to events.
func (r *Router) mapBatch(cur *txn, b *cdc.Batch) ([]*dispatch.Event, error) {
	events := make([]*dispatch.Event, 0, len(b.Changes))
	for i := range b.Changes {
		ch := &b.Changes[i]
		if ch.Index < cur.next {
			continue
		}
		cur.next = ch.Index + 1
		cur.changes++
		ev, ok, err := r.opts.Mapper.Map(ch)
		if err != nil {
			return nil, fmt.Errorf("route: transaction %s change %d: %w", b.CommitLSN, ch.Index, err)
		}
		if !ok {
			continue
		}
		if len(ev.Omitted) > 0 {
			r.opts.Metrics.OmittedColumns.WithLabelValues(ev.Topic.Resource).Add(float64(len(ev.Omitted)))
			r.log.Warn("unchanged TOASTed columns left out of a payload: set REPLICA IDENTITY FULL on the table",
				"topic", ev.Topic.String(), "columns", ev.Omitted, "commit_lsn", b.CommitLSN.String())
		}
		events = append(events, &dispatch.Event{Event: ev, RowKey: dispatch.RowKey(ev.Topic.Resource, ev.Key), Commit: state.LSN(b.CommitLSN)})
	}
	return events, nil
}
