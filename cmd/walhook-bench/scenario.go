package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/pgcluster"
	"github.com/walhook/walhook/internal/shop"
)

const (
	slotName        = "walhook_bench"
	publicationName = "walhook_bench"
	decodeSlot      = "bench_decode"
	// stallTimeout ends a wait when no delivery arrived for this long.
	stallTimeout = 30 * time.Second
	// loadChunk is how many transactions one CALL bench_load commits.
	loadChunk = 5_000
)

// bench holds what every scenario shares: the cluster, the receiver and
// the walhook binary.
type bench struct {
	opts    options
	log     io.Writer
	epoch   time.Time
	dir     string
	bin     string
	cluster *pgcluster.Cluster
	rv      *receiver
	srv     *http.Server
	srvWG   sync.WaitGroup
	recvURL string
}

func newBench(ctx context.Context, opts options, log io.Writer) (_ *bench, err error) {
	b := &bench{opts: opts, log: log, epoch: time.Now()}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.dir, err = os.MkdirTemp("", "walhook-bench-"); err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	if b.bin = opts.walhook; b.bin == "" {
		b.logf("building walhook …")
		if b.bin, err = buildWalhook(ctx, b.dir); err != nil {
			return nil, err
		}
	}
	binDir, err := pgcluster.BinDir()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b.logf("starting PostgreSQL from %s …", binDir)
	if b.cluster, err = pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir, Settings: map[string]string{
		// synchronous_commit stays on: with it off, the server only
		// decodes WAL the WAL writer has flushed (every 200 ms), which
		// would add up to 200 ms to every steady latency.
		"max_wal_size": "4GB",
	}}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b.rv = newReceiver(b.epoch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	b.recvURL = "http://" + ln.Addr().String()
	b.srv = &http.Server{Handler: b.rv, ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				b.rv.conns.Add(1)
			}
		}}
	b.srvWG.Add(1)
	go func() {
		defer b.srvWG.Done()
		_ = b.srv.Serve(ln)
	}()
	b.logf("receiver on %s; walhook log.level %s, JSON, to a file", b.recvURL, opts.logLevel)
	return b, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%7.1fs  %s\n", time.Since(b.epoch).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) close() {
	if b.srv != nil {
		_ = b.srv.Close()
		b.srvWG.Wait()
	}
	if b.cluster != nil {
		if err := b.cluster.Stop(); err != nil {
			b.logf("stop PostgreSQL: %v", err)
		}
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// database creates a database for one scenario with the shop schema and
// the workload functions, and returns its URL and a connection.
func (b *bench) database(ctx context.Context, name string) (string, *pgx.Conn, error) {
	url, err := b.cluster.CreateDatabase(ctx, name)
	if err != nil {
		return "", nil, fmt.Errorf("bench: %w", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", nil, fmt.Errorf("bench: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, shop.Schema+workloadSQL); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return "", nil, fmt.Errorf("bench: create the schema: %w", err)
	}
	return url, conn, nil
}

// dropDatabase drops a scenario's slots and database so the next one
// starts clean.
func (b *bench) dropDatabase(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		b.logf("drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, name); err != nil {
		b.logf("drop the slots of %s: %v", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		b.logf("drop %s: %v", name, err)
	}
}

// startWalhook writes a configuration for dbURL and starts walhook.
func (b *bench) startWalhook(ctx context.Context, scenario, dbURL string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := walhookConfig{dbURL: dbURL, slot: slotName, publication: publicationName, listen: addr,
		receiver: b.recvURL, concurrency: b.opts.concurrency, logLevel: b.opts.logLevel}
	switch scenario {
	case "drain-payload":
		cfg.orderPayloadQuery = orderPayloadQuery
	case "drain-resource":
		cfg.perResource = true
	}
	cfgPath := filepath.Join(b.dir, scenario+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.yaml()), 0o600); err != nil {
		return nil, fmt.Errorf("bench: write config: %w", err)
	}
	return startWalhook(ctx, b.bin, cfgPath, filepath.Join(b.dir, scenario+".log"), addr, b.epoch)
}

// load commits transactions first..last-1 of the plan with bench_load.
func (b *bench) load(ctx context.Context, conn *pgx.Conn, first, last int64) error {
	for from := first; from < last; from += loadChunk {
		to := min(from+loadChunk, last)
		// Simple protocol: the procedure commits, which needs CALL outside
		// any transaction block.
		if _, err := conn.Exec(ctx, fmt.Sprintf("CALL bench_load(%d, %d)", from, to), pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("bench: load transactions %d..%d: %w", from, to, err)
		}
	}
	return nil
}

// waitDelivered waits until every delivery of p arrived, no delivery came
// for stallTimeout, or ctx ends; it returns the analysis of what arrived.
func (b *bench) waitDelivered(ctx context.Context, p plan, rec *recorder, commits []time.Duration) (outcome, error) {
	want := p.expected()
	lastTotal, lastChange := int64(-1), time.Now()
	var lastCheck time.Time
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		total := rec.total.Load()
		if total != lastTotal {
			lastTotal, lastChange = total, time.Now()
		}
		if rec.valid.Load() >= want && time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			if o := analyze(p, rec.snapshot(), commits); o.Missing == 0 {
				return o, nil
			}
		}
		if time.Since(lastChange) > stallTimeout {
			b.logf("no delivery for %s; giving up the wait", stallTimeout)
			return analyze(p, rec.snapshot(), commits), nil
		}
		select {
		case <-ctx.Done():
			return analyze(p, rec.snapshot(), commits), fmt.Errorf("bench: waiting for deliveries (%d of %d): %w", rec.valid.Load(), want, ctx.Err())
		case <-t.C:
		}
	}
}

// fetchProfile saves a CPU profile of walhook, from when it is ready for
// up to 10 s.
func fetchProfile(ctx context.Context, p *proc, path string) error {
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	return fetchPprof(ctx, p.addr, "profile?seconds=10", path)
}

// fetchPprof saves walhook's /debug/pprof/<name> to path.
func fetchPprof(ctx context.Context, addr, name, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+name, nil)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: profile: HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("bench: profile: %w", err)
	}
	return f.Close()
}

// drain runs the drain scenario (and, with ceilings, the HTTP and decoding
// ceilings on the same backlog).
func (b *bench) drain(ctx context.Context, name string, changes int64, ceilings bool) (result, error) {
	p := planForChanges(changes)
	withPayload := name == "drain-payload"
	p.perResource = name == "drain-resource"
	if withPayload {
		for e := range events {
			p.built[webhookID(orderResource, e)] = true
		}
	}
	res := result{Scenario: name, Changes: p.expected(), Transactions: p.txns, Concurrency: b.opts.concurrency, LogLevel: b.opts.logLevel}
	dbName := "bench_" + strings.ReplaceAll(name, "-", "_")
	dbURL, conn, err := b.database(ctx, dbName)
	if err != nil {
		return res, err
	}
	defer b.dropDatabase(ctx, dbName)
	defer conn.Close(context.WithoutCancel(ctx))

	// Create the slot and publication with a first start of walhook.
	w, err := b.startWalhook(ctx, name, dbURL)
	if err != nil {
		return res, err
	}
	if err := w.waitReady(ctx); err != nil {
		_ = w.stop()
		return res, err
	}
	if err := w.stop(); err != nil {
		return res, err
	}
	if ceilings {
		if err := createDecodeSlot(ctx, conn, decodeSlot); err != nil {
			return res, err
		}
	}

	b.logf("%s: committing %d changes in %d transactions …", name, res.Changes, p.txns)
	start := time.Now()
	if err := b.load(ctx, conn, 0, p.txns); err != nil {
		return res, err
	}
	res.LoadSeconds = time.Since(start).Seconds()
	var endpos string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endpos); err != nil {
		return res, fmt.Errorf("bench: current WAL position: %w", err)
	}
	b.logf("%s: committed in %.1fs; starting walhook", name, res.LoadSeconds)

	rec := newRecorder(res.Changes)
	b.rv.rec.Store(rec)
	b.rv.sampling.Store(ceilings)
	w, err = b.startWalhook(ctx, name, dbURL)
	if err != nil {
		return res, err
	}
	var profWG sync.WaitGroup
	if ceilings && b.opts.cpuProfile != "" {
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			if err := fetchProfile(ctx, w, b.opts.cpuProfile); err != nil {
				b.logf("cpu profile: %v", err)
			} else {
				b.logf("cpu profile written to %s", b.opts.cpuProfile)
			}
		}()
	}
	cpu0, conns0 := w.cpuTime(), b.rv.conns.Load()
	o, waitErr := b.waitDelivered(ctx, p, rec, nil)
	cpu1 := w.cpuTime()
	res.Connections = b.rv.conns.Load() - conns0
	res.PeakRSSMiB = float64(w.peak()) / (1 << 20)
	res.MeanBodyBytes = div(rec.bytes.Load(), rec.total.Load())
	if ceilings && b.opts.memProfile != "" {
		if err := fetchPprof(ctx, w.addr, "allocs", b.opts.memProfile); err != nil {
			b.logf("allocation profile: %v", err)
		} else {
			b.logf("allocation profile written to %s", b.opts.memProfile)
		}
	}
	if withPayload {
		if err := res.payloadFigures(ctx, w.addr, p); err != nil {
			b.logf("%s: payload query figures: %v", name, err)
		}
	}
	profWG.Wait()
	stopErr := w.stop()
	b.rv.sampling.Store(false)
	if err := errors.Join(waitErr, stopErr); err != nil {
		return res, err
	}
	res.setOutcome(o)
	res.cpu(cpu1-cpu0, o.Expected)
	if o.Last > w.started {
		res.Seconds = (o.Last - w.started).Seconds()
		res.EventsPerSecond = float64(o.Expected) / res.Seconds
	}
	if o.First > 0 {
		res.TimeToFirstMs = float64(o.First-w.started) / float64(time.Millisecond)
	}
	b.logf("%s: %d deliveries in %.1fs (%.0f/s)", name, o.Expected, res.Seconds, res.EventsPerSecond)
	if !ceilings {
		return res, nil
	}

	b.logf("%s: decoding ceiling: pg_recvlogical to %s …", name, endpos)
	took, err := decodeCeiling(ctx, b.cluster.BinDir(), dbURL, decodeSlot, publicationName, endpos)
	if err != nil {
		return res, err
	}
	res.DecodePerSecond = float64(o.Expected) / took.Seconds()
	res.DecodeRatio = res.EventsPerSecond / res.DecodePerSecond

	workers := b.opts.httpConns
	b.logf("%s: HTTP ceiling: %d signed POSTs, %d connections …", name, o.Expected, workers)
	took, ho, err := httpCeiling(ctx, b.rv, b.recvURL, rec.snapshot(), o.Expected, workers)
	if err != nil {
		return res, err
	}
	res.HTTPWorkers = workers
	res.HTTPPerSecond = float64(ho.Received) / took.Seconds()
	res.HTTPRatio = res.EventsPerSecond / res.HTTPPerSecond
	res.HTTPBadSig = ho.BadSig
	return res, nil
}

// steady runs the steady scenario: a fixed change rate, latency measured
// from each transaction's commit.
func (b *bench) steady(ctx context.Context) (result, error) {
	const name = "steady"
	p := planForChanges(int64(float64(b.opts.rate) * b.opts.duration.Seconds()))
	res := result{Scenario: name, Changes: p.expected(), Transactions: p.txns, Concurrency: b.opts.concurrency, LogLevel: b.opts.logLevel}
	dbName := "bench_" + name
	dbURL, conn, err := b.database(ctx, dbName)
	if err != nil {
		return res, err
	}
	defer b.dropDatabase(ctx, dbName)
	defer conn.Close(context.WithoutCancel(ctx))

	rec := newRecorder(res.Changes)
	b.rv.rec.Store(rec)
	w, err := b.startWalhook(ctx, name, dbURL)
	if err != nil {
		return res, err
	}
	if err := w.waitReady(ctx); err != nil {
		_ = w.stop()
		return res, err
	}
	b.logf("%s: %d changes/s for %s (%d transactions) …", name, b.opts.rate, b.opts.duration, p.txns)
	cpu0, conns0 := w.cpuTime(), b.rv.conns.Load()
	commits := make([]time.Duration, p.txns)
	for i := range commits {
		commits[i] = -1
	}
	interval := time.Duration(float64(b.opts.duration) / float64(p.txns))
	start := time.Now()
	var genErr error
	for i := range p.txns {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if _, err := conn.Exec(ctx, "SELECT bench_step($1)", i); err != nil {
			genErr = fmt.Errorf("bench: transaction %d: %w", i, err)
			break
		}
		commits[i] = time.Since(b.epoch)
	}
	res.LoadSeconds = time.Since(start).Seconds()
	var o outcome
	var waitErr error
	if genErr == nil {
		o, waitErr = b.waitDelivered(ctx, p, rec, commits)
	}
	cpu1 := w.cpuTime()
	res.Connections = b.rv.conns.Load() - conns0
	res.PeakRSSMiB = float64(w.peak()) / (1 << 20)
	res.MeanBodyBytes = div(rec.bytes.Load(), rec.total.Load())
	if err := errors.Join(genErr, waitErr, w.stop()); err != nil {
		return res, err
	}
	res.setOutcome(o)
	res.cpu(cpu1-cpu0, o.Expected)
	res.Seconds = res.LoadSeconds
	res.EventsPerSecond = float64(o.Expected) / res.LoadSeconds
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res.P50Ms = ms(percentile(o.Latencies, 0.50))
	res.P95Ms = ms(percentile(o.Latencies, 0.95))
	res.P99Ms = ms(percentile(o.Latencies, 0.99))
	if n := len(o.Latencies); n > 0 {
		res.MaxMs = ms(o.Latencies[n-1])
	}
	return res, nil
}
