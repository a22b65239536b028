package dispatch

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/walhook/walhook/filter"
	"github.com/walhook/walhook/topics"
)

// routeTable maps each event topic to the webhooks that receive it: a
// webhook of topic "<resource>.*" is listed under the resource's created,
// updated and deleted topics, so routing an event is one lookup.
type routeTable map[topics.Topic][]route

// route is one webhook an event topic goes to, with its filter.
type route struct {
	h *hook
	f *compiledFilter // nil: every event
}

// compiledFilter is a webhook's filter, compiled once per expression and
// kept across refreshes while the expression is unchanged.
type compiledFilter struct {
	prog *filter.Program
	// lastLog is when an evaluation error was last logged (unix nanos):
	// errors are logged at most once a minute per webhook, and counted.
	lastLog atomic.Int64
}

// filterLogEvery is how often a webhook's filter errors may be logged.
const filterLogEvery = time.Minute

// compileFilterLocked returns webhook id's compiled filter for src, reusing
// the one compiled before when src is unchanged.
func (d *Dispatcher) compileFilterLocked(id int64, src string) (*compiledFilter, error) {
	if f := d.filters[id]; f != nil && f.prog.String() == src {
		return f, nil
	}
	prog, err := filter.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	f := &compiledFilter{prog: prog}
	d.filters[id] = f
	return f, nil
}

// filterInput is the input of filters for one event at a time. It is owned
// by one goroutine.
type filterInput struct {
	in  filter.Input
	cur *Event // the event in holds; nil when none
}

// of returns the filter input of e, built when first asked for an event.
func (fi *filterInput) of(e *Event) *filter.Input {
	if fi.cur != e {
		fi.cur = e
		row := e.Body
		if e.Topic.Event == topics.EventDeleted && len(e.Old) > 0 {
			row = e.Old // the whole old row rather than the key
		}
		fi.in.Reset(e.Topic.Event, row, e.Old)
	}
	return &fi.in
}

// pass reports whether e passes r's filter (always, with none). An
// evaluation error is no match: counted, and logged once a minute per
// webhook. A filtered-out event is counted.
func (d *Dispatcher) pass(r route, fi *filterInput, e *Event) bool {
	if r.f == nil {
		return true
	}
	ok, err := r.f.prog.Match(fi.of(e))
	if err != nil {
		r.h.m.filterErrors.Inc()
		now := d.clock.Now().UnixNano()
		if last := r.f.lastLog.Load(); now-last >= int64(filterLogEvery) && r.f.lastLog.CompareAndSwap(last, now) {
			d.log.Warn("webhook filter failed on an event, which counts as no match (logged once a minute; see walhook_filter_errors_total)",
				"webhook_id", r.h.id, "topic", e.Topic.String(), "filter", r.f.prog.String(), "error", err)
		}
	}
	if !ok {
		r.h.m.filtered.Inc()
	}
	return ok
}

// Wanted reports whether some webhook would receive e: one whose topic
// matches, that is not paused, and whose filter (if any) is true for e.
// It evaluates filters on e as it is, so a stage that builds bodies can
// ask it first and skip work for events nobody receives; the events
// still go to the dispatcher, which settles them and counts them as
// filtered. It is safe to call from one goroutine other than the
// dispatcher's.
func (d *Dispatcher) Wanted(e *Event) bool {
	var fi filterInput
	for _, r := range (*d.routes.Load())[e.Topic] {
		if r.h.status.Load() == statusPaused {
			continue
		}
		if r.f == nil {
			return true
		}
		if ok, _ := r.f.prog.Match(fi.of(e)); ok {
			return true
		}
	}
	return false
}
