package main

import (
	"slices"
	"time"
)

// outcome is what a scenario's deliveries show against its plan.
type outcome struct {
	Expected   int64
	Received   int64 // every record, duplicates and bad ones included
	Missing    int64
	Duplicates int64 // a (webhook, row, revision) received again
	// OutOfOrder counts a row's revision lower than one already received
	// by the same webhook, and, with <resource>.* webhooks, a row's event
	// arriving after a later one (created, updates, deleted).
	OutOfOrder int64
	BadSig     int64
	Unexpected int64 // a good signature but not in the plan
	First      time.Duration
	Last       time.Duration // arrival of the last first-time expected delivery
	// Latencies are arrival minus commit of each expected delivery's first
	// arrival, when commit times are known.
	Latencies []time.Duration
}

// key packs a delivery's identity: webhook, revision and row id.
func key(wh int, rev uint8, id int64) uint64 {
	return uint64(wh)<<56 | uint64(rev)<<48 | uint64(id)&(1<<48-1)
}

// analyze matches recs (in arrival order) against p. commits, when not
// nil, holds each transaction's commit time (negative when unknown).
func analyze(p plan, recs []record, commits []time.Duration) outcome {
	o := outcome{Expected: p.expected(), Received: int64(len(recs)), First: -1}
	seen := make(map[uint64]struct{}, min(int64(len(recs)), o.Expected))
	lastRev := make(map[uint64]uint8) // updated webhooks: row -> highest revision so far
	dids := make(map[[16]byte]struct{})
	var unique int64
	for _, rc := range recs {
		if !rc.sigOK {
			o.BadSig++
			continue
		}
		if o.First < 0 {
			o.First = rc.at
		}
		wh := int(rc.wh)
		if wh >= 1 && wh <= webhookCount && p.built[wh] {
			if _, dup := dids[rc.did]; dup {
				o.Duplicates++
				continue
			}
			dids[rc.did] = struct{}{}
			unique++
			o.Last = max(o.Last, rc.at)
			continue
		}
		tx, ok := p.txOf(wh, rc.id, int(rc.rev))
		if !ok {
			o.Unexpected++
			continue
		}
		k := key(wh, rc.rev, rc.id)
		if _, dup := seen[k]; dup {
			o.Duplicates++
			continue
		}
		seen[k] = struct{}{}
		unique++
		if p.perResource {
			row := key((wh-1)/len(events)+1, 0, rc.id)
			seq := rowSeq(wh, rc.rev)
			if prev, ok := lastRev[row]; ok && seq < prev {
				o.OutOfOrder++
			} else {
				lastRev[row] = seq
			}
		} else if (wh-1)%len(events) == 1 {
			row := key(wh, 0, rc.id)
			if prev, ok := lastRev[row]; ok && rc.rev < prev {
				o.OutOfOrder++
			} else {
				lastRev[row] = rc.rev
			}
		}
		o.Last = max(o.Last, rc.at)
		if commits != nil && tx < int64(len(commits)) && commits[tx] >= 0 {
			o.Latencies = append(o.Latencies, rc.at-commits[tx])
		}
	}
	o.Missing = o.Expected - unique
	slices.Sort(o.Latencies)
	return o
}

// percentile returns the q-quantile (0..1) of sorted, or 0 when empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[min(i, len(sorted)-1)]
}
