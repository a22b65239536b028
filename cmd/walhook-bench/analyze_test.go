package main

import (
	"testing"
	"time"
)

// simulate counts the changes of p by walking bench_step's plan: for every
// transaction, the inserts, the updates of existing rows and the delete.
func simulate(p plan) (perWebhook [webhookCount + 1]int64) {
	for i := range p.txns {
		r, t := int(i%4), i/4
		perWebhook[webhookID(r, 0)] += rowsPerStep
		for _, id := range []int64{6*(t-1) + 1, 6*(t-2) + 1, 6*(t-3) + 1} {
			if id >= 1 {
				perWebhook[webhookID(r, 1)]++
			}
		}
		if 6*(t-4)+1 >= 1 {
			perWebhook[webhookID(r, 2)]++
		}
	}
	return perWebhook
}

func TestPlanExpected(t *testing.T) {
	for _, txns := range []int64{1, 3, 4, 5, 17, 40, 1001} {
		p := plan{txns: txns}
		want := simulate(p)
		var total int64
		for wh := 1; wh <= webhookCount; wh++ {
			if got := p.expectedPerWebhook(wh); got != want[wh] {
				t.Errorf("txns %d: webhook %d (%s) expects %d, simulation %d", txns, wh, topicOf(wh), got, want[wh])
			}
			total += want[wh]
		}
		if got := p.expected(); got != total {
			t.Errorf("txns %d: expected() = %d, want %d", txns, got, total)
		}
	}
}

func TestPlanTxOf(t *testing.T) {
	p := plan{txns: 40} // 10 steps per resource
	tests := []struct {
		name   string
		wh     int
		id     int64
		rev    int
		wantTx int64
		wantOK bool
	}{
		{"order created", webhookID(2, 0), 1, 0, 2, true},
		{"order created, sixth row of the step", webhookID(2, 0), 6, 0, 2, true},
		{"order created in the second step", webhookID(2, 0), 7, 0, 6, true},
		{"order updated rev 1 in the next step", webhookID(2, 1), 1, 1, 6, true},
		{"order updated rev 3", webhookID(2, 1), 1, 3, 14, true},
		{"a row that is not a step's lead is never updated", webhookID(2, 1), 2, 1, 0, false},
		{"order deleted four steps later", webhookID(2, 2), 1, 0, 18, true},
		{"a row that is not a step's lead is never deleted", webhookID(2, 2), 3, 0, 0, false},
		{"coupon created last step", webhookID(0, 0), 60, 0, 36, true},
		{"row beyond the plan", webhookID(0, 0), 61, 0, 0, false},
		{"update past the plan", webhookID(3, 1), 49, 2, 0, false},
		{"revision 4 never happens", webhookID(1, 1), 1, 4, 0, false},
		{"created with a revision", webhookID(1, 0), 1, 1, 0, false},
		{"unknown webhook", 13, 1, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, ok := p.txOf(tt.wh, tt.id, tt.rev)
			if ok != tt.wantOK || (ok && tx != tt.wantTx) {
				t.Errorf("txOf(%d, %d, %d) = %d, %v; want %d, %v", tt.wh, tt.id, tt.rev, tx, ok, tt.wantTx, tt.wantOK)
			}
		})
	}
}

func TestAnalyze(t *testing.T) {
	p := plan{txns: 8} // 2 steps per resource: ids 1..12 created, id 1 updated to rev 1
	var all []record
	at := time.Duration(0)
	add := func(recs *[]record, wh int, id int64, rev uint8, sigOK bool) {
		at += time.Millisecond
		*recs = append(*recs, record{at: at, wh: uint8(wh), id: id, rev: rev, sigOK: sigOK})
	}
	for r := range resources {
		for id := int64(1); id <= 2*rowsPerStep; id++ {
			add(&all, webhookID(r, 0), id, 0, true)
		}
		add(&all, webhookID(r, 1), 1, 1, true)
	}
	if got := p.expected(); got != int64(len(all)) {
		t.Fatalf("plan expects %d, test sends %d", got, len(all))
	}
	o := analyze(p, all, nil)
	if o.Missing != 0 || o.Duplicates != 0 || o.OutOfOrder != 0 || o.BadSig != 0 || o.Unexpected != 0 {
		t.Fatalf("clean run: %+v", o)
	}
	if o.First != time.Millisecond || o.Last != at {
		t.Errorf("first %v last %v, want 1ms and %v", o.First, o.Last, at)
	}

	long := plan{txns: 40}
	tests := []struct {
		name  string
		build func() []record
		check func(o outcome) bool
	}{
		{"duplicate", func() []record {
			var r []record
			add(&r, 1, 1, 0, true)
			add(&r, 1, 1, 0, true)
			return r
		}, func(o outcome) bool { return o.Duplicates == 1 && o.Missing == long.expected()-1 }},
		{"order violation", func() []record {
			var r []record
			add(&r, webhookID(2, 1), 1, 2, true)
			add(&r, webhookID(2, 1), 1, 1, true)
			add(&r, webhookID(2, 1), 1, 3, true)
			return r
		}, func(o outcome) bool { return o.OutOfOrder == 1 && o.Duplicates == 0 }},
		{"per-resource order is not checked across webhooks", func() []record {
			var r []record
			add(&r, webhookID(2, 1), 1, 1, true)
			add(&r, webhookID(2, 0), 1, 0, true)
			return r
		}, func(o outcome) bool { return o.OutOfOrder == 0 }},
		{"bad signature", func() []record {
			var r []record
			add(&r, 1, 1, 0, false)
			return r
		}, func(o outcome) bool { return o.BadSig == 1 && o.Missing == long.expected() }},
		{"unexpected", func() []record {
			var r []record
			add(&r, 1, 99, 0, true)
			return r
		}, func(o outcome) bool { return o.Unexpected == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if o := analyze(long, tt.build(), nil); !tt.check(o) {
				t.Errorf("outcome %+v", o)
			}
		})
	}
}

// TestAnalyzePerResource: with <resource>.* webhooks, a row's created,
// updates and deleted must arrive in that order.
func TestAnalyzePerResource(t *testing.T) {
	p := plan{txns: 40, perResource: true}
	at := time.Duration(0)
	rec := func(wh int, id int64, rev uint8) record {
		at += time.Millisecond
		return record{at: at, wh: uint8(wh), id: id, rev: rev, sigOK: true}
	}
	tests := []struct {
		name string
		recs []record
		want int64
	}{
		{"in order", []record{rec(webhookID(2, 0), 1, 0), rec(webhookID(2, 1), 1, 1), rec(webhookID(2, 1), 1, 2), rec(webhookID(2, 2), 1, 0)}, 0},
		{"updated before created", []record{rec(webhookID(2, 1), 1, 1), rec(webhookID(2, 0), 1, 0)}, 1},
		{"deleted before updated", []record{rec(webhookID(2, 0), 1, 0), rec(webhookID(2, 2), 1, 0), rec(webhookID(2, 1), 1, 3)}, 1},
		{"other resources are other rows", []record{rec(webhookID(1, 1), 1, 1), rec(webhookID(2, 0), 1, 0)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if o := analyze(p, tt.recs, nil); o.OutOfOrder != tt.want || o.Unexpected != 0 {
				t.Errorf("order violations %d, unexpected %d; want %d, 0", o.OutOfOrder, o.Unexpected, tt.want)
			}
		})
	}
}

func TestParseBody(t *testing.T) {
	tests := []struct {
		body string
		id   int64
		rev  uint8
	}{
		{`{"id":123,"code":"X","bench_rev":2}`, 123, 2},
		{`{"id":7}`, 7, 0},
		{`{"id":5,"billing":{"bench_rev":9},"bench_rev":1}`, 5, 1},
		{`webhook_id=3`, 0, 0},
	}
	for _, tt := range tests {
		if id, rev := parseBody([]byte(tt.body)); id != tt.id || rev != tt.rev {
			t.Errorf("parseBody(%s) = %d, %d; want %d, %d", tt.body, id, rev, tt.id, tt.rev)
		}
	}
}

// TestAnalyzeBuilt: deliveries of webhooks whose bodies a payload query
// builds are matched by delivery id: any revision counts once, a second
// delivery with the same id is a duplicate, and one missing is missing.
func TestAnalyzeBuilt(t *testing.T) {
	p := plan{txns: 40}
	for e := range events {
		p.built[webhookID(orderResource, e)] = true
	}
	var recs []record
	var n byte
	for wh := 1; wh <= webhookCount; wh++ {
		r := (wh - 1) / len(events)
		want := p.expectedPerWebhook(wh)
		for i := int64(0); i < want; i++ {
			rc := record{wh: uint8(wh), sigOK: true, at: time.Millisecond}
			if r == orderResource {
				n++
				rc.did[0], rc.did[1] = n, byte(wh)
				rc.id, rc.rev = 1, 3 // the state when the query ran
			} else {
				rc.id, rc.rev = planned(p, wh, i)
			}
			recs = append(recs, rc)
		}
	}
	if o := analyze(p, recs, nil); o.Missing != 0 || o.Duplicates != 0 || o.Unexpected != 0 {
		t.Fatalf("complete deliveries: %+v", o)
	}
	dup := append(recs[:len(recs):len(recs)], recs[firstOf(recs, webhookID(orderResource, 1))])
	if o := analyze(p, dup, nil); o.Duplicates != 1 || o.Missing != 0 {
		t.Errorf("a repeated order delivery: duplicates %d missing %d, want 1, 0", o.Duplicates, o.Missing)
	}
	i := firstOf(recs, webhookID(orderResource, 0))
	short := append(append([]record(nil), recs[:i]...), recs[i+1:]...)
	if o := analyze(p, short, nil); o.Missing != 1 {
		t.Errorf("an order delivery left out: missing %d, want 1", o.Missing)
	}
}

// firstOf returns the index of the first record of webhook wh.
func firstOf(recs []record, wh int) int {
	for i, rc := range recs {
		if int(rc.wh) == wh {
			return i
		}
	}
	return -1
}

// planned returns the id and revision of the i-th delivery the plan makes
// for webhook wh, by searching the plan.
func planned(p plan, wh int, i int64) (int64, uint8) {
	var k int64
	for id := int64(1); id <= rowsPerStep*p.txns; id++ {
		for rev := 0; rev <= 3; rev++ {
			if _, ok := p.txOf(wh, id, rev); ok {
				if k == i {
					return id, uint8(rev)
				}
				k++
			}
		}
	}
	return 0, 0
}
