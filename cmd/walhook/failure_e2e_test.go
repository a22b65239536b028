package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/walhooktest"
)

// waitComplete waits until every expected delivery arrived, failing only
// when no new delivery arrives for two minutes; it returns how long it took.
func waitComplete(t *testing.T, w *itemsWorld, done func(*receiver.Receiver) bool) time.Duration {
	t.Helper()
	start := time.Now()
	last, lastChange := -1, time.Now()
	for !done(w.recv) {
		if n := len(w.recv.Deliveries()); n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > 2*time.Minute {
			t.Fatalf("no delivery for 2 minutes; %d requests so far", last)
		}
		w.recv.Wait(time.Second, done)
	}
	return time.Since(start)
}

// statuses reads the webhooks' statuses from the state schema.
func statuses(t *testing.T, db string) map[int64]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, status FROM walhook.webhooks`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		out[id] = st
	}
	return out
}

// TestPoisonRowsDoNotBlock: a receiver rejecting every delivery about 5
// rows during 5,000 changes gets every other row's events, in order, and
// no webhook is disabled (the real binary, default failure rules).
func TestPoisonRowsDoNotBlock(t *testing.T) {
	bin := walhooktest.Binary(t)
	w := newItemsWorld(t, 500, "")
	poison := map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true}
	var rejected atomic.Int64
	w.recv.Respond(func(d *receiver.Delivery) (int, http.Header) {
		var row struct{ ID int }
		if json.Unmarshal(d.Body, &row) == nil && poison[row.ID] {
			rejected.Add(1)
			return http.StatusBadRequest, nil
		}
		return http.StatusOK, nil
	})
	p := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
	defer p.Kill()
	w.waitStreaming(t)
	final := w.load(context.Background(), t, 2500, 0)
	healthy := map[int]int{}
	changes := 0
	for row, v := range final {
		changes += v
		if !poison[row] {
			healthy[row] = v
		}
	}
	took := waitComplete(t, w, w.complete(healthy))
	expected, _, dups := w.check(t, healthy)
	for id, st := range statuses(t, w.db) {
		if st != "active" {
			t.Errorf("webhook %d is %s, want active: bad rows never disable a webhook", id, st)
		}
	}
	t.Logf("%d changes; %d healthy deliveries all arrived %v after the load ended (%d duplicates); %d rejected requests about the 5 bad rows",
		changes, expected, took.Round(time.Millisecond), dups, rejected.Load())
}

// TestOutageDisablesNothing: a receiver answering 503 for 10 s in the
// middle of 17 s of changes (up to about 1,000 a second) disables no
// webhook, and
// everything arrives soon after the load ends (the real binary, default
// failure rules; the tests' short probe schedule).
func TestOutageDisablesNothing(t *testing.T) {
	bin := walhooktest.Binary(t)
	w := newItemsWorld(t, 1000, "")
	var down atomic.Bool
	w.recv.Respond(func(*receiver.Delivery) (int, http.Header) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	p := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
	defer p.Kill()
	w.waitStreaming(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		down.Store(true)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
		down.Store(false)
	}()
	// The load runs until the outage is over and a little beyond, however
	// fast the machine commits.
	loadStart := time.Now()
	final := w.loadWhile(ctx, t, func(int) bool { return time.Since(loadStart) < 17*time.Second }, time.Millisecond)
	changes := 0
	for _, v := range final {
		changes += v
	}
	for down.Load() {
		w.recv.Wait(100*time.Millisecond, func(*receiver.Receiver) bool { return !down.Load() })
	}
	took := waitComplete(t, w, w.complete(final))
	expected, _, dups := w.check(t, final)
	failed := len(w.recv.Deliveries()) - len(w.recv.Accepted())
	for id, st := range statuses(t, w.db) {
		if st != "active" {
			t.Errorf("webhook %d is %s, want active: a 10 s outage never disables a webhook", id, st)
		}
	}
	t.Logf("%d changes in %v; %d deliveries all arrived %v after the load ended; %d failed requests during the outage, %d duplicates",
		changes, time.Since(loadStart).Round(time.Millisecond)-took.Round(time.Millisecond), expected, took.Round(time.Millisecond), failed, dups)
}
