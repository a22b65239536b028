package dispatch

import (
	"context"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

// fakeStore is the state schema in memory, with the same transactional
// rules as *state.Store, for tests of the delivery policy without a
// database.
type fakeStore struct {
	mu       sync.Mutex
	webhooks map[int64]*state.Webhook
	since    map[int64]time.Time // failing_since
	parked   []state.Parked      // in id order
	nextID   int64
	maxPage  atomic.Int64 // the most body bytes one ParkedHeads call returned
}

func newFakeStore() *fakeStore {
	return &fakeStore{webhooks: make(map[int64]*state.Webhook), since: make(map[int64]time.Time)}
}

func (s *fakeStore) Webhooks(context.Context) ([]state.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []state.Webhook
	for _, w := range s.webhooks {
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *fakeStore) Revisions(context.Context) (map[int64]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]int64)
	for id, w := range s.webhooks {
		out[id] = w.Revision
	}
	return out, nil
}

func (s *fakeStore) SyncConfigWebhook(_ context.Context, w state.Webhook) (state.Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.webhooks[w.ID]; ok && old.DefinitionHash == w.DefinitionHash {
		return *old, nil
	}
	w.Origin, w.Revision = state.OriginConfig, 1
	s.webhooks[w.ID] = &w
	return w, nil
}

func (s *fakeStore) DeleteConfigWebhooksExcept(context.Context, []int64) ([]int64, error) {
	return nil, nil
}

func (s *fakeStore) status(id int64) (webhook.Status, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.webhooks[id]
	return w.Status, w.FailureCount
}

func (s *fakeStore) setStatus(id int64, status webhook.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.webhooks[id]
	w.Status = status
	if status == webhook.StatusActive {
		w.FailureCount = 0
		delete(s.since, id)
	}
	w.Revision++
}

func (s *fakeStore) RecordSuccess(_ context.Context, id int64, _ state.DeliveryResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhooks[id].FailureCount = 0
	delete(s.since, id)
	return nil
}

func (s *fakeStore) recordFailureLocked(id int64, failures int, r state.DeliveryResult, rule state.DisableRule, disable bool) (state.Failure, error) {
	w, ok := s.webhooks[id]
	if !ok {
		return state.Failure{}, state.ErrNotFound
	}
	if failures == 0 {
		return state.Failure{FailureCount: w.FailureCount}, nil
	}
	if w.FailureCount == 0 {
		s.since[id] = r.At
	}
	w.FailureCount += failures
	f := state.Failure{FailureCount: w.FailureCount, FailingSince: s.since[id]}
	f.Disabled = w.Status == webhook.StatusActive && (disable || rule != nil && rule(f.FailureCount, f.FailingSince))
	if f.Disabled {
		w.Status = webhook.StatusDisabled
		w.Revision++
	}
	return f, nil
}

func (s *fakeStore) RecordFailure(_ context.Context, id int64, failures int, r state.DeliveryResult, rule state.DisableRule, disable bool, park []state.Parked) (state.Failure, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.recordFailureLocked(id, failures, r, rule, disable)
	if err != nil {
		return f, err
	}
	for _, p := range park {
		s.nextID++
		p.ID = s.nextID
		p.Body = slices.Clone(p.Body)
		s.parked = append(s.parked, p)
	}
	return f, nil
}

func (s *fakeStore) RecordPing(context.Context, int64, bool, string) error { return nil }

func (s *fakeStore) ParkedKeys(_ context.Context, id int64) (map[string]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int)
	for _, p := range s.parked {
		if p.WebhookID == id {
			out[p.RowKey]++
		}
	}
	return out, nil
}

func (s *fakeStore) ParkedCount(_ context.Context, id int64) (rows, bytes int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.parked {
		if p.WebhookID == id {
			rows++
			bytes += int64(len(p.Body))
		}
	}
	return rows, bytes, nil
}

func (s *fakeStore) ParkedHeads(_ context.Context, id, afterID int64, dueBy time.Time, limit int, maxBytes int64) ([]state.Parked, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool)
	var out []state.Parked
	var size int64
	for _, p := range s.parked {
		if p.WebhookID != id || seen[p.RowKey] {
			continue
		}
		seen[p.RowKey] = true
		if p.ID <= afterID || p.NextAttemptAt.After(dueBy) {
			continue
		}
		size += int64(len(p.Body))
		if len(out) == limit || len(out) > 0 && size > maxBytes {
			break
		}
		out = append(out, p)
	}
	var bytes int64
	for _, p := range out {
		bytes += int64(len(p.Body))
	}
	if bytes > s.maxPage.Load() {
		s.maxPage.Store(bytes)
	}
	return out, nil
}

func (s *fakeStore) DeleteParked(_ context.Context, id int64, ids []int64, _ state.DeliveryResult) ([]string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	var bytes int64
	s.parked = slices.DeleteFunc(s.parked, func(p state.Parked) bool {
		if p.WebhookID == id && slices.Contains(ids, p.ID) {
			keys = append(keys, p.RowKey)
			bytes += int64(len(p.Body))
			return true
		}
		return false
	})
	s.webhooks[id].FailureCount = 0
	delete(s.since, id)
	return keys, bytes, nil
}

func (s *fakeStore) RescheduleParked(_ context.Context, p state.Parked, r state.DeliveryResult, next time.Time, rule state.DisableRule, disable bool) (state.Failure, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.recordFailureLocked(p.WebhookID, 1, r, rule, disable)
	if err != nil {
		return f, err
	}
	for i := range s.parked {
		if s.parked[i].ID == p.ID {
			s.parked[i].Attempts++
			s.parked[i].NextAttemptAt = next
		}
	}
	return f, nil
}

func (s *fakeStore) NextParkedAttempt(_ context.Context, id int64, after time.Time) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, p := range s.parked {
		if p.WebhookID == id && p.NextAttemptAt.After(after) && (next.IsZero() || p.NextAttemptAt.Before(next)) {
			next = p.NextAttemptAt
		}
	}
	return next, !next.IsZero(), nil
}

func (s *fakeStore) TrimParked(context.Context, int64, int64, int64) ([]string, int64, error) {
	return nil, 0, nil
}

func (s *fakeStore) SavePositions(context.Context, string, state.LSN, map[int64]state.Progress) error {
	return nil
}

func (s *fakeStore) parkedRows(id int64) int {
	n, _, _ := s.ParkedCount(context.Background(), id)
	return int(n)
}

// fakeClock is a clock that moves only when a test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	at    time.Time
	armed bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	if d >= 0 {
		t.Reset(d)
	}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.Advance(0)
	return t
}

// Advance moves the clock by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.armed = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

// next returns when the earliest armed timer fires, and whether any is.
func (c *fakeClock) next() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best time.Duration
	found := false
	for _, t := range c.timers {
		if t.armed && (!found || t.at.Sub(c.now) < best) {
			best, found = t.at.Sub(c.now), true
		}
	}
	return best, found
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	t.at, t.armed = t.c.now.Add(d), true
	t.c.mu.Unlock()
	if d <= 0 {
		t.c.Advance(0)
	}
}
