package route

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/topics"
)

// Bodies builds the bodies of created and updated events from the
// database (a resource's payload_query; payload.Builder implements it).
type Bodies interface {
	// Has reports whether resource's bodies are built.
	Has(resource string) bool
	// Build returns the body of each key that has one, by event key
	// (topics.Event.Key). A key left out keeps its row image. An error
	// means nothing was built; the router retries.
	Build(ctx context.Context, resource string, keys []string) (map[string][]byte, error)
}

// Backoff of a failing payload query: the first retry after
// bodiesBackoff, doubling up to bodiesMaxBackoff.
const (
	bodiesBackoff    = 200 * time.Millisecond
	bodiesMaxBackoff = 10 * time.Second
)

// degraded is why routing is stalled, for readiness; nil when it is not.
type degraded = atomic.Pointer[string]

// Degraded reports whether routing is held up, and why: a payload query
// that keeps failing. Nothing is lost meanwhile: the transaction waits
// and the slot does not move past it.
func (r *Router) Degraded() (reason string, bad bool) {
	if p := r.degraded.Load(); p != nil {
		return *p, true
	}
	return "", false
}

// buildBodies gives the created and updated events of resources with a
// payload query the documents their query returns (Event.Document), one
// round trip per resource for the whole batch. It is called on each
// dispatch batch just before it is handed on, and only for events some
// webhook wants after its filter (Options.Wanted): a filtered event costs
// no query, and filters read the row image, never the document. A failing query is retried with backoff until it succeeds or
// ctx ends (then buildBodies returns false and the batch is not handed
// on). Deleted events and actions keep their bodies.
func (r *Router) buildBodies(ctx context.Context, events []*dispatch.Event) bool {
	if r.opts.Bodies == nil {
		return true
	}
	var keys map[string][]string
	for _, e := range events {
		if e.Topic.Event != topics.EventCreated && e.Topic.Event != topics.EventUpdated || e.Topic.IsAction() ||
			!r.opts.Bodies.Has(e.Topic.Resource) || r.opts.Wanted != nil && !r.opts.Wanted(e) {
			continue
		}
		if keys == nil {
			keys = make(map[string][]string)
		}
		keys[e.Topic.Resource] = append(keys[e.Topic.Resource], e.Key)
	}
	for resource, ks := range keys {
		docs, ok := r.buildRetrying(ctx, resource, ks)
		if !ok {
			return false
		}
		for _, e := range events {
			if e.Topic.Resource != resource || e.Topic.Event != topics.EventCreated && e.Topic.Event != topics.EventUpdated {
				continue
			}
			if doc, ok := docs[e.Key]; ok {
				e.Document = doc
			}
		}
	}
	return true
}

// buildRetrying calls Bodies.Build until it succeeds, waiting between
// attempts and reporting the stall through Degraded; ok is false when ctx
// ended first.
func (r *Router) buildRetrying(ctx context.Context, resource string, keys []string) (docs map[string][]byte, ok bool) {
	wait := bodiesBackoff
	for {
		docs, err := r.opts.Bodies.Build(ctx, resource, keys)
		if err == nil {
			r.degraded.Store(nil)
			return docs, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		reason := "payload_query of resource " + resource + " fails: " + err.Error()
		r.degraded.Store(&reason)
		r.log.Error("payload_query failed: routing waits and retries; nothing is lost",
			"resource", resource, "keys", len(keys), "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		wait = min(2*wait, bodiesMaxBackoff)
	}
}
