package cdc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// waitTimeout bounds every wait in these tests. It only reports a hang:
// each wait is for one step that normally takes milliseconds, so it is
// generous enough for a loaded machine.
const waitTimeout = 2 * time.Minute

// shopSchema is the table most tests replicate, with several column types.
const shopSchema = `
CREATE TABLE public.orders (
	id bigint PRIMARY KEY,
	status text NOT NULL,
	total numeric(10,2),
	paid boolean,
	placed_at timestamptz,
	tags text[],
	meta jsonb,
	note text
);
CREATE TABLE public.other (id serial PRIMARY KEY, v text);`

// testConfig returns a Config for the orders table of url.
func testConfig(url string) Config {
	return Config{
		ConnString:     url,
		Slot:           "walhook",
		Publication:    "walhook",
		Tables:         []Table{{"public", "orders"}},
		StatusInterval: 100 * time.Millisecond,
	}
}

// harness runs a Reader for a test.
type harness struct {
	t       *testing.T
	url     string
	reader  *Reader
	metrics *Metrics
	reg     *prometheus.Registry
	out     chan *Batch
	cancel  context.CancelFunc
	done    chan error
}

// startReader runs Setup and a Reader for cfg; the reader is stopped at
// cleanup, and must have returned nil by then.
func startReader(t *testing.T, cfg Config) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := Setup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return runReader(t, cfg)
}

// runReader runs a Reader for cfg without Setup.
func runReader(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, url: cfg.ConnString, reg: prometheus.NewRegistry(), out: make(chan *Batch, 4), done: make(chan error, 1)}
	h.metrics = NewMetrics(h.reg)
	cfg.Metrics = h.metrics
	h.reader = NewReader(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.reader.Run(ctx, h.out) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// stop cancels the reader and returns Run's result. It may be called more
// than once.
func (h *harness) stop() error {
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return err
	case <-time.After(waitTimeout):
		return errors.New("Run did not return after its context was cancelled")
	}
}

// next returns the next batch.
func (h *harness) next() *Batch {
	h.t.Helper()
	select {
	case b := <-h.out:
		return b
	case err := <-h.done:
		h.t.Fatalf("Run returned while a batch was awaited: %v", err)
	case <-time.After(waitTimeout):
		h.t.Fatalf("no batch within %v (reader state %s)", waitTimeout, h.reader.State())
	}
	return nil
}

// nextTx returns the batches of the next transaction.
func (h *harness) nextTx() []*Batch {
	h.t.Helper()
	var tx []*Batch
	for {
		b := h.next()
		if len(tx) > 0 && b.CommitLSN != tx[0].CommitLSN {
			h.t.Fatalf("batch of transaction %s before transaction %s ended", b.CommitLSN, tx[0].CommitLSN)
		}
		tx = append(tx, b)
		if b.Last {
			return tx
		}
	}
}

// changes flattens the changes of batches.
func changes(tx []*Batch) []Change {
	var cs []Change
	for _, b := range tx {
		cs = append(cs, b.Changes...)
	}
	return cs
}

// text returns the text of value i of row, or "NULL" / "UNCHANGED".
func text(row []Value, i int) string {
	switch row[i].Kind {
	case KindNull:
		return "NULL"
	case KindUnchanged:
		return "UNCHANGED"
	}
	return string(row[i].Data)
}

// col returns the index of column name in rel.
func col(t *testing.T, rel *Relation, name string) int {
	t.Helper()
	i := slices.IndexFunc(rel.Columns, func(c Column) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("relation %s has no column %s", rel.QualifiedName(), name)
	}
	return i
}

// queryString runs a one-value query.
func queryString(t *testing.T, url, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s *string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// queryLSN runs a query returning one LSN.
func queryLSN(t *testing.T, url, sql string, args ...any) pglogrepl.LSN {
	t.Helper()
	s := queryString(t, url, sql, args...)
	if s == "" {
		return 0
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// slotConfirmed returns the slot's confirmed_flush_lsn.
func slotConfirmed(t *testing.T, url, slot string) pglogrepl.LSN {
	t.Helper()
	return queryLSN(t, url, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot)
}

// eventually polls cond until it holds or the wait times out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// withUser returns url with user and password replaced.
func withUser(url, user, password string) string {
	creds := user
	if password != "" {
		creds += ":" + password
	}
	return strings.Replace(url, "postgres@", creds+"@", 1)
}

// uniqueName returns a cluster-wide unique name for roles.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
}
