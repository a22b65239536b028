// Command walhook-bench measures walhook end to end on a private
// PostgreSQL, on the shape of a real shop: walhook runs as a separate
// process with 12 webhooks (one per core topic) all at one receiver host
// on 127.0.0.1 that verifies every signature; the four shop tables have
// REPLICA IDENTITY FULL; rows are WooCommerce-like (numeric, jsonb billing
// and line items, text[], timestamptz; about 650 bytes of JSON on
// average); walhook writes its INFO delivery log, one JSON line per
// attempt, to a file. The bench makes changes whose every delivery it can
// predict, and reports throughput, latency, memory, CPU and delivery
// correctness (missing, duplicates, per-row order, bad signatures), next
// to the HTTP and decoding ceilings measured in the same run.
//
//	go run ./cmd/walhook-bench                # drain, steady, drain-resource, memory
//	go run ./cmd/walhook-bench --quick        # a smoke run of about a minute
//	go run ./cmd/walhook-bench --scenarios drain --json --cpuprofile cpu.pprof --memprofile allocs.pprof
//
// Changes come in transactions of ten: six inserts, three updates and one
// delete (60/30/10), over the four tables in turn.
//
// Scenarios:
//
//   - drain (the headline): walhook stopped (its slot already created),
//     --changes changes committed, walhook started; events/s from its
//     start until the last expected delivery arrives, and the time to the
//     first delivery. The same backlog is then replayed by a plain Go HTTP
//     client with --http-conns connections (signed POSTs of the bodies
//     walhook sent, to the same receiver): the HTTP ceiling, and walhook's
//     ratio to it, the headline figure. pg_recvlogical reads the same
//     backlog: the decoding ceiling.
//   - steady: --rate changes/s for --duration; commit-to-arrival latency
//     percentiles.
//   - drain-resource: the drain through four <resource>.* webhooks (one
//     per resource) instead of twelve; every row's created, updates and
//     deleted must arrive in commit order.
//   - memory: the drain again with --big-changes, to compare peak RSS with
//     the drain's.
//   - drain-payload: the drain with a payload_query on orders (a
//     WooCommerce-like order document with its line items), to compare
//     its throughput with the drain's and report what the query costs per
//     event. Order bodies then hold the row's state when the query ran
//     (or the row image when the row was deleted meanwhile), so order
//     deliveries are matched by delivery id rather than by revision.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	scenarios   []string
	changes     int64
	bigChanges  int64
	rate        int
	duration    time.Duration
	concurrency int
	maxTime     time.Duration
	walhook     string
	logLevel    string
	json        bool
	quick       bool
	cpuProfile  string
	memProfile  string
	httpConns   int
}

var allScenarios = []string{"drain", "steady", "drain-resource", "memory", "drain-payload"}

// defaultScenarios run when --scenarios is not given.
var defaultScenarios = []string{"drain", "steady", "drain-resource", "memory"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "walhook-bench:", err)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("walhook-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	scenarios := fs.String("scenarios", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", "))
	fs.Int64Var(&o.changes, "changes", 100_000, "changes committed for the drain scenario")
	fs.Int64Var(&o.bigChanges, "big-changes", 1_000_000, "changes committed for the memory scenario")
	fs.IntVar(&o.rate, "rate", 500, "changes per second in the steady scenario")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "length of the steady scenario's load")
	fs.IntVar(&o.concurrency, "concurrency", 8, "walhook's delivery.concurrency (deliveries in flight per webhook)")
	fs.DurationVar(&o.maxTime, "max-time", 10*time.Minute, "stop everything after this long")
	fs.StringVar(&o.walhook, "walhook", "", "walhook binary to run (default: go build ./cmd/walhook of this module)")
	fs.StringVar(&o.logLevel, "log-level", "info", "walhook's log.level (info writes a JSON line per delivery attempt to walhook's log file)")
	fs.BoolVar(&o.json, "json", false, "also print one JSON line per scenario")
	fs.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run of about a minute")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of walhook taken during the drain (up to 10s) to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write walhook's allocation profile (allocs, taken at the end of the drain) to this file")
	fs.IntVar(&o.httpConns, "http-conns", 8, "connections (and requests in flight) of the plain client measuring the HTTP ceiling")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*scenarios, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return o, fmt.Errorf("--scenarios: unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(o.scenarios, s) {
			o.scenarios = append(o.scenarios, s)
		}
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["changes"] {
			o.changes = 5_000
		}
		if !set["big-changes"] {
			o.bigChanges = 20_000
		}
		if !set["rate"] {
			o.rate = 250
		}
		if !set["duration"] {
			o.duration = 8 * time.Second
		}
		if !set["max-time"] {
			o.maxTime = 3 * time.Minute
		}
	}
	switch {
	case o.changes < changesPerTx || o.bigChanges < changesPerTx:
		return o, fmt.Errorf("--changes and --big-changes must be at least %d", changesPerTx)
	case o.rate < 1 || o.duration <= 0:
		return o, errors.New("--rate and --duration must be positive")
	case o.concurrency < 1 || o.concurrency > 256:
		return o, errors.New("--concurrency must be 1 to 256")
	case o.httpConns < 1 || o.httpConns > 1024:
		return o, errors.New("--http-conns must be 1 to 1024")
	case o.maxTime <= 0:
		return o, errors.New("--max-time must be positive")
	}
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.maxTime)
	defer cancel()

	b, err := newBench(ctx, opts, stderr)
	if err != nil {
		return err
	}
	defer b.close()

	var results []result
	for _, s := range opts.scenarios {
		var r result
		var err error
		switch s {
		case "drain":
			r, err = b.drain(ctx, "drain", opts.changes, true)
		case "steady":
			r, err = b.steady(ctx)
		case "memory":
			r, err = b.drain(ctx, "memory", opts.bigChanges, false)
		case "drain-payload":
			r, err = b.drain(ctx, "drain-payload", opts.changes, false)
		case "drain-resource":
			r, err = b.drain(ctx, "drain-resource", opts.changes, false)
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("%w (--max-time %s)", err, opts.maxTime)
			}
			printTable(stdout, opts, results)
			return fmt.Errorf("scenario %s: %w", s, err)
		}
		results = append(results, r)
		if opts.json {
			if err := printJSON(stdout, r); err != nil {
				return err
			}
		}
	}
	printTable(stdout, opts, results)
	return nil
}
