package jsonlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// logger is one way of building the logger a line is written through:
// the same steps on slog.JSONHandler and on Handler.
type logger func(h slog.Handler) *slog.Logger

// TestSameLinesAsSlog pins the package's promise: every line is the line
// slog.JSONHandler writes for the same record, whether the fast path or
// the slow one wrote it.
func TestSameLinesAsSlog(t *testing.T) {
	at := time.Date(2026, 12, 2, 21, 40, 5, 123456789, time.UTC)
	delivery := func(h slog.Handler) *slog.Logger {
		return slog.New(h).With("source", "webhooks-delivery").With(slog.Int64("webhook_id", 5), slog.String("url", "http://127.0.0.1:8080/one"))
	}
	plain := func(h slog.Handler) *slog.Logger { return slog.New(h) }
	grouped := func(h slog.Handler) *slog.Logger { return slog.New(h).WithGroup("g").With("k", "v") }
	emptyGroup := func(h slog.Handler) *slog.Logger { return slog.New(h).WithGroup("").With("k", 1) }
	escapedWith := func(h slog.Handler) *slog.Logger { return slog.New(h).With("url", "http://h/\"q\"") }

	tests := []struct {
		name  string
		fast  bool // written by the fast path, not handed to slog.JSONHandler
		build logger
		time  time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
	}{
		{"delivery ok", true, delivery, at, slog.LevelInfo, "webhook delivery", []slog.Attr{
			slog.String("topic", "order.updated"), slog.String("delivery_id", "b41a24d86c9e11a54f3364bb4fc0c965"),
			slog.Int("attempt", 1), slog.Float64("duration_seconds", 0.001234567), slog.Int("response_code", 200),
		}},
		{"delivery failed", true, delivery, at, slog.LevelWarn, "webhook delivery", []slog.Attr{
			slog.String("topic", "order.*"), slog.Int("attempt", 3), slog.Float64("duration_seconds", 3),
			slog.Int("response_code", 0), slog.String("error", "timed out"), slog.String("response_body", "<html>&amp;</html>"),
		}},
		{"escaped body", false, delivery, at, slog.LevelWarn, "webhook delivery", []slog.Attr{
			slog.String("response_body", "line\nbreak \"quoted\" \\ tab\t \x01 é \u2028 \xff"),
		}},
		{"escaped message", false, plain, at, slog.LevelInfo, "a \"quoted\" message", nil},
		{"no time", true, plain, time.Time{}, slog.LevelInfo, "m", []slog.Attr{slog.Int("n", 1)}},
		{"time out of range", false, plain, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", nil},
		{"time with zone", true, plain, at.In(time.FixedZone("x", 5*3600+1800)), slog.LevelError, "m", nil},
		{"custom level", true, plain, at, slog.LevelInfo + 2, "m", nil},
		{"numbers", true, plain, at, slog.LevelDebug, "m", []slog.Attr{
			slog.Int64("min", math.MinInt64), slog.Uint64("max", math.MaxUint64), slog.Bool("b", false),
			slog.Duration("d", 1500*time.Millisecond), slog.Float64("zero", 0), slog.Float64("negzero", math.Copysign(0, -1)),
			slog.Float64("small", 1e-6), slog.Float64("big", 1e20), slog.Float64("third", 1.0/3),
		}},
		{"float just under 1e-6", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("tiny", 1e-7)}},
		{"float of 1e21", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("huge", 1e21)}},
		{"float just under 1e21", true, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("big", 999999999999999900000)}},
		{"backslash", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.String("path", `C:\dir`)}},
		{"quote", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.String("q", `say "hi"`)}},
		{"control byte", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.String("c", "a\x7fb\x1fc")}},
		{"html characters", true, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.String("h", "<a href='x'>&</a>")}},
		{"non-ASCII", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.String("u", "café")}},
		{"float not a number", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("nan", math.NaN())}},
		{"float infinite", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Float64("inf", math.Inf(1))}},
		{"error value", false, plain, at, slog.LevelError, "m", []slog.Attr{slog.Any("error", errors.New("boom"))}},
		{"time value", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Time("at", at)}},
		{"group value", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Group("g", "a", 1, "b", "x")}},
		{"empty key", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Int("", 1), {}}},
		{"escaped key", false, plain, at, slog.LevelInfo, "m", []slog.Attr{slog.Int("k\"", 1)}},
		{"grouped logger", false, grouped, at, slog.LevelInfo, "m", []slog.Attr{slog.Int("n", 1)}},
		{"empty group", true, emptyGroup, at, slog.LevelInfo, "m", []slog.Attr{slog.Int("n", 1)}},
		{"escaped With", false, escapedWith, at, slog.LevelInfo, "m", []slog.Attr{slog.Int("n", 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want, got bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			h := New(&got, opts)
			slow := 0
			h.slow = counting{h.slow, &slow}
			for _, out := range []struct {
				buf *bytes.Buffer
				h   slog.Handler
			}{{&want, slog.NewJSONHandler(&want, opts)}, {&got, h}} {
				l := tc.build(out.h)
				r := slog.NewRecord(tc.time, tc.level, tc.msg, 0)
				r.AddAttrs(tc.attrs...)
				if err := l.Handler().Handle(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			if got.String() != want.String() {
				t.Errorf("line differs from slog.JSONHandler's:\n got  %s want %s", got.String(), want.String())
			}
			if wrote := slow == 0; wrote != tc.fast {
				t.Errorf("written by the fast path: %v, want %v", wrote, tc.fast)
			}
		})
	}
}

// counting is a handler that counts the records it handles.
type counting struct {
	slog.Handler
	n *int
}

func (c counting) Handle(ctx context.Context, r slog.Record) error {
	*c.n++
	return c.Handler.Handle(ctx, r)
}

func (c counting) WithAttrs(attrs []slog.Attr) slog.Handler {
	return counting{c.Handler.WithAttrs(attrs), c.n}
}

func (c counting) WithGroup(name string) slog.Handler {
	return counting{c.Handler.WithGroup(name), c.n}
}

// TestEnabled pins the level check, through a LevelVar that changes.
func TestEnabled(t *testing.T) {
	var level slog.LevelVar
	level.Set(slog.LevelWarn)
	var buf bytes.Buffer
	l := slog.New(New(&buf, &slog.HandlerOptions{Level: &level})).With("a", 1)
	l.Info("hidden")
	l.Warn("shown")
	level.Set(slog.LevelDebug)
	l.Debug("shown too")
	if got := strings.Count(buf.String(), "\n"); got != 2 || strings.Contains(buf.String(), "hidden") {
		t.Errorf("lines written:\n%s", buf.String())
	}
}

// BenchmarkDeliveryLine compares the delivery log line through Handler
// and through slog.JSONHandler.
//
//	go test -run '^$' -bench DeliveryLine -benchmem ./internal/jsonlog
func BenchmarkDeliveryLine(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    slog.Handler
	}{{"jsonlog", New(io.Discard, nil)}, {"slog", slog.NewJSONHandler(io.Discard, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			h := slog.New(bc.h).With("source", "webhooks-delivery").With(slog.Int64("webhook_id", 5), slog.String("url", "http://127.0.0.1:8080/one")).Handler()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "webhook delivery", 0)
				r.AddAttrs(slog.String("topic", "order.updated"), slog.String("delivery_id", "b41a24d86c9e11a54f3364bb4fc0c965"),
					slog.Int("attempt", 1), slog.Float64("duration_seconds", 0.001234567), slog.Int("response_code", 200))
				_ = h.Handle(ctx, r)
			}
		})
	}
}
