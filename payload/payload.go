// Package payload builds webhook bodies from the database. A resource
// with a payload_query gets the body of its created and updated events
// from that query: SQL the user writes, taking $1, an array of the
// resource's keys, and returning (key, json or jsonb document) rows.
//
// The queries run on a small pool of their own (two connections,
// read-only, application_name walhook-payload), once per batch of keys,
// so a transaction of many rows costs one round trip. Documents are read
// in PostgreSQL's text format, so a body is exactly the bytes PostgreSQL
// renders for the document, and the signature covers those bytes.
package payload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Query is one resource's payload_query.
type Query struct {
	// Resource is the resource's name, e.g. "order"; messages and metrics
	// name it.
	Resource string
	// SQL takes $1, an array of keys, and returns two columns: the key and
	// a json or jsonb document.
	SQL string
}

// Options configure a Builder.
type Options struct {
	// ConnString is the database's connection string (postgres.url).
	ConnString string
	Queries    []Query
	// Timeout is each query's statement_timeout. Zero means 5s.
	Timeout time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
}

// MaxConns is the size of the payload pool.
const MaxConns = 2

// maxKeysPerQuery bounds the keys sent in one run of a query, and so the
// size of one result; a bigger batch takes one round trip per this many.
const maxKeysPerQuery = 1000

// clientGrace is how much longer than the statement_timeout the client
// waits for an answer before it gives the connection up: it only matters
// when the server or the network stops answering at all.
const clientGrace = 5 * time.Second

// Metrics are the payload queries' collectors.
type Metrics struct {
	Duration  *prometheus.HistogramVec
	Errors    *prometheus.CounterVec
	Fallbacks *prometheus.CounterVec
}

// NewMetrics creates the payload queries' collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "walhook_payload_query_duration_seconds",
			Help:    "Time one run of a resource's payload_query took, from sending it to its last row.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"resource"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_payload_query_errors_total",
			Help: "Runs of a resource's payload_query that failed (database down, statement timeout, an error in the query); routing waits and retries.",
		}, []string{"resource"}),
		Fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walhook_payload_fallback_total",
			Help: "Created and updated events sent with the row image from the WAL because the payload_query returned no document for their key (the row was deleted meanwhile).",
		}, []string{"resource"}),
	}
	reg.MustRegister(m.Duration, m.Errors, m.Fallbacks)
	return m
}

// Builder runs the payload queries. Its methods are safe for concurrent
// use.
type Builder struct {
	pool    *pgxpool.Pool
	stmts   map[string]*statement
	timeout time.Duration
	log     *slog.Logger
	metrics *Metrics
}

// statement is a query checked at start.
type statement struct {
	resource string
	sql      string
	paramOID uint32 // the array type of $1, as PostgreSQL inferred it
}

// Open checks every query against the database and returns a Builder
// whose pool connects on first use. Each query is prepared: an error in
// it, a $1 that is not an array, or a result that is not two columns
// with a json or jsonb second one refuses the start with an error naming
// the resource and, where there is one, PostgreSQL's message. With no
// queries Open returns a nil Builder and no error; a nil Builder has no
// queries.
func Open(ctx context.Context, opts Options) (*Builder, error) {
	if len(opts.Queries) == 0 {
		return nil, nil
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	cfg, err := pgxpool.ParseConfig(opts.ConnString)
	if err != nil {
		return nil, fmt.Errorf("payload: parse the connection string: %w", err)
	}
	cfg.MaxConns = MaxConns
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	params := cfg.ConnConfig.RuntimeParams
	params["application_name"] = "walhook-payload"
	params["default_transaction_read_only"] = "on"
	params["statement_timeout"] = strconv.FormatInt(opts.Timeout.Milliseconds(), 10)

	stmts, err := check(ctx, cfg.ConnConfig, opts.Queries)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("payload: open the pool: %w", err)
	}
	b := &Builder{pool: pool, stmts: stmts, timeout: opts.Timeout, log: opts.Logger, metrics: opts.Metrics}
	for r := range stmts {
		b.metrics.Duration.WithLabelValues(r)
		b.metrics.Errors.WithLabelValues(r)
		b.metrics.Fallbacks.WithLabelValues(r)
	}
	return b, nil
}

// check prepares each query on one connection and checks its parameter
// and result columns.
func check(ctx context.Context, cc *pgx.ConnConfig, queries []Query) (map[string]*statement, error) {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return nil, fmt.Errorf("payload: connect to check the payload queries: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	stmts := make(map[string]*statement, len(queries))
	var problems []error
	for _, q := range queries {
		st, err := checkQuery(ctx, conn, q)
		if err != nil {
			problems = append(problems, fmt.Errorf("resource %q: payload_query: %w", q.Resource, err))
			continue
		}
		stmts[q.Resource] = st
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return stmts, nil
}

// checkQuery prepares q (unnamed) and checks its description.
func checkQuery(ctx context.Context, conn *pgx.Conn, q Query) (*statement, error) {
	sd, err := conn.PgConn().Prepare(ctx, "", q.SQL, nil)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			msg := pgErr.Message
			if pgErr.Position > 0 {
				msg += fmt.Sprintf(" (at character %d of the query)", pgErr.Position)
			}
			return nil, fmt.Errorf("PostgreSQL refuses it: %s (SQLSTATE %s)", msg, pgErr.Code)
		}
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if n := len(sd.ParamOIDs); n != 1 {
		return nil, fmt.Errorf("takes %d parameters; it must take exactly one, $1, the array of keys", n)
	}
	var isArray bool
	var paramType string
	if err := conn.QueryRow(ctx, `SELECT typcategory = 'A', format_type(oid, NULL) FROM pg_type WHERE oid = $1`,
		sd.ParamOIDs[0]).Scan(&isArray, &paramType); err != nil {
		return nil, fmt.Errorf("read the type of $1 (oid %d): %w", sd.ParamOIDs[0], err)
	}
	if !isArray {
		return nil, fmt.Errorf("$1 is used as %s, not as an array: it is the array of keys, compare with = ANY($1)", paramType)
	}
	if n := len(sd.Fields); n != 2 {
		return nil, fmt.Errorf("returns %d columns; it must return two: the key and a json or jsonb document", n)
	}
	if oid := sd.Fields[1].DataTypeOID; oid != pgtype.JSONOID && oid != pgtype.JSONBOID {
		var typ string
		if err := conn.QueryRow(ctx, `SELECT format_type($1, NULL)`, oid).Scan(&typ); err != nil {
			typ = "type oid " + strconv.FormatUint(uint64(oid), 10)
		}
		return nil, fmt.Errorf("its second column %q is %s; it must be json or jsonb (cast it, or build it with jsonb_build_object)", sd.Fields[1].Name, typ)
	}
	return &statement{resource: q.Resource, sql: q.SQL, paramOID: sd.ParamOIDs[0]}, nil
}

// Close closes the pool. It is safe on a nil Builder.
func (b *Builder) Close() {
	if b != nil {
		b.pool.Close()
	}
}

// Has reports whether resource has a payload query. It is false for
// every resource of a nil Builder.
func (b *Builder) Has(resource string) bool {
	if b == nil {
		return false
	}
	_, ok := b.stmts[resource]
	return ok
}

// Build runs resource's query for keys, the Event.Key of created and
// updated events (for a one-column key, the column's text; see
// topics.Event), and returns each key's document, exactly as PostgreSQL
// renders it. A key without a document is left out of the map, counted
// in walhook_payload_fallback_total and logged at debug: its event keeps
// the row image. keys may repeat. An error (database unreachable,
// statement timeout, an error raised by the query) is counted and
// returned; the caller retries, nothing is built in part.
func (b *Builder) Build(ctx context.Context, resource string, keys []string) (map[string][]byte, error) {
	st := b.stmts[resource]
	if st == nil {
		return nil, fmt.Errorf("payload: resource %q has no payload_query", resource)
	}
	// values maps the key values sent to the event keys they came from.
	values := make(map[string]string, len(keys))
	sent := make([]string, 0, len(keys))
	for _, k := range keys {
		v, ok := keyValue(k)
		if !ok {
			continue
		}
		if _, dup := values[v]; !dup {
			values[v] = k
			sent = append(sent, v)
		}
	}
	docs := make(map[string][]byte, len(sent))
	for start := 0; start < len(sent); start += maxKeysPerQuery {
		chunk := sent[start:min(start+maxKeysPerQuery, len(sent))]
		if err := b.run(ctx, st, chunk, values, docs); err != nil {
			if ctx.Err() == nil {
				b.metrics.Errors.WithLabelValues(resource).Inc()
			}
			return nil, err
		}
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if _, ok := docs[k]; ok || seen[k] {
			continue
		}
		seen[k] = true
		b.metrics.Fallbacks.WithLabelValues(resource).Inc()
		b.log.Debug("payload_query returned no document for the key: the row image from the WAL is sent",
			"resource", resource, "key", k)
	}
	return docs, nil
}

// run runs st for the key values chunk and adds the documents found to
// docs, by event key.
func (b *Builder) run(ctx context.Context, st *statement, chunk []string, values map[string]string, docs map[string][]byte) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout+clientGrace)
	defer cancel()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("payload: resource %q: connect: %w", st.resource, err)
	}
	defer conn.Release()
	began := time.Now()
	rr := conn.Conn().PgConn().ExecParams(ctx, st.sql, [][]byte{arrayLiteral(chunk)}, []uint32{st.paramOID},
		[]int16{pgtype.TextFormatCode}, []int16{pgtype.TextFormatCode, pgtype.TextFormatCode})
	var shape error
	for rr.NextRow() {
		if shape != nil {
			continue
		}
		row := rr.Values()
		if len(row) != 2 {
			shape = fmt.Errorf("payload: resource %q: payload_query returned %d columns, not two (was the schema changed?)", st.resource, len(row))
			continue
		}
		k, ok := values[string(row[0])]
		if row[0] == nil || row[1] == nil || !ok {
			continue
		}
		docs[k] = append([]byte(nil), row[1]...)
	}
	_, err = rr.Close()
	b.metrics.Duration.WithLabelValues(st.resource).Observe(time.Since(began).Seconds())
	if err != nil {
		return fmt.Errorf("payload: resource %q: payload_query: %w", st.resource, err)
	}
	return shape
}

// keyValue returns the key column's text of an event key (topics.Event):
// a one-column key is its text with ',' and '\' escaped by '\'. Keys that
// hold no value (NULL \N, unknown \?, or empty) have none to query.
func keyValue(k string) (string, bool) {
	if k == "" || k == `\N` || k == `\?` {
		return "", false
	}
	if !strings.Contains(k, `\`) {
		return k, true
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '\\' && i+1 < len(k) {
			i++
		}
		b.WriteByte(k[i])
	}
	return b.String(), true
}

// arrayLiteral writes values as a PostgreSQL array literal of quoted
// elements, {"1","2"}, which array_in parses into any element type: the
// server converts each element with the type of $1.
func arrayLiteral(values []string) []byte {
	n := 2
	for _, v := range values {
		n += len(v) + 3
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for j := 0; j < len(v); j++ {
			if v[j] == '"' || v[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, v[j])
		}
		b = append(b, '"')
	}
	return append(b, '}')
}
