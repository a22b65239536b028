// Package jsonlog is a slog.Handler that writes the lines slog.JSONHandler
// writes, byte for byte, in a fraction of its time for the lines walhook
// writes most: one per delivery attempt, made of short ASCII strings and
// numbers. Such a record is appended to a pooled buffer directly, the
// attributes given to WithAttrs rendered once. Any other record (a value
// that is a time, an error, a group or anything else, a string that needs
// escaping, a float JSON would write with an exponent) goes to a
// slog.JSONHandler with the same attributes, so the output is the same
// either way.
package jsonlog

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler is the handler. Handlers made from one by WithAttrs and
// WithGroup share its writer and its lock.
type Handler struct {
	w     io.Writer
	mu    *sync.Mutex // one Write per line, in order, as slog's handler does
	level slog.Leveler
	slow  slog.Handler // the slog.JSONHandler with the same attributes and groups
	attrs []byte       // the attributes given to WithAttrs, rendered: `,"key":value…`
	fast  bool         // false once a group is open or an attribute could not be rendered
}

// New returns a handler writing to w, its level from opts (nil: info).
// Options other than Level are not supported; they are ignored.
func New(w io.Writer, opts *slog.HandlerOptions) *Handler {
	var level slog.Leveler = slog.LevelInfo
	if opts != nil && opts.Level != nil {
		level = opts.Level
	}
	mu := new(sync.Mutex)
	return &Handler{
		w:     w,
		mu:    mu,
		level: level,
		slow:  slog.NewJSONHandler(&lockedWriter{w: w, mu: mu}, &slog.HandlerOptions{Level: level}),
		fast:  true,
	}
}

// lockedWriter is the slow handler's writer. slog.JSONHandler locks its
// own mutex around each Write; this one is shared with the fast path, so
// lines from either never interleave on writers that are not safe for
// concurrent use.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Enabled reports whether level is at or above the handler's level.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// WithAttrs returns a handler whose lines carry attrs after the message.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.slow = h.slow.WithAttrs(attrs)
	if c.fast {
		rendered := append([]byte(nil), h.attrs...)
		for _, a := range attrs {
			var ok bool
			if rendered, ok = appendAttr(rendered, a); !ok {
				c.fast = false
				break
			}
		}
		c.attrs = rendered
	}
	return &c
}

// WithGroup returns a handler whose later attributes go in group name;
// its records are written by the slow path.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.slow = h.slow.WithGroup(name)
	c.fast = c.fast && name == ""
	return &c
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r as one JSON line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.slow.Handle(ctx, r)
	}
	bp := bufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			bufs.Put(bp)
		}
	}()
	buf := append((*bp)[:0], '{')
	if !r.Time.IsZero() {
		if y := r.Time.Year(); y < 0 || y >= 10000 {
			return h.slow.Handle(ctx, r)
		}
		buf = append(buf, `"time":"`...)
		buf = r.Time.AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `",`...)
	}
	buf = append(buf, `"level":"`...)
	buf = append(buf, r.Level.String()...)
	buf = append(buf, `","msg":`...)
	var ok bool
	if buf, ok = appendString(buf, r.Message); !ok {
		return h.slow.Handle(ctx, r)
	}
	buf = append(buf, h.attrs...)
	ok = true
	r.Attrs(func(a slog.Attr) bool {
		buf, ok = appendAttr(buf, a)
		return ok
	})
	if !ok {
		return h.slow.Handle(ctx, r)
	}
	buf = append(buf, "}\n"...)
	*bp = buf
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(buf)
	return err
}

// appendAttr appends `,"key":value` for an attribute the fast path
// writes as slog.JSONHandler does, and reports whether it could.
func appendAttr(buf []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return buf, false // slog drops or inlines these: the slow path decides
	}
	buf = append(buf, ',')
	buf, ok := appendString(buf, a.Key)
	if !ok {
		return buf, false
	}
	buf = append(buf, ':')
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		return appendString(buf, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10), true
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool()), true
	case slog.KindDuration:
		return strconv.AppendInt(buf, int64(v.Duration()), 10), true
	case slog.KindFloat64:
		// encoding/json, which slog calls for floats, writes these without
		// an exponent, as strconv's shortest 'f' form.
		f := v.Float64()
		if abs := math.Abs(f); f != 0 && (abs < 1e-6 || abs >= 1e21) || math.IsNaN(f) {
			return buf, false
		}
		return strconv.AppendFloat(buf, f, 'f', -1, 64), true
	}
	return buf, false
}

// appendString appends s quoted when no byte of it needs escaping in
// JSON (printable ASCII other than `"` and `\`), and reports whether it
// could.
func appendString(buf []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == '"' || b == '\\' || b >= utf8.RuneSelf {
			return buf, false
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"'), true
}
