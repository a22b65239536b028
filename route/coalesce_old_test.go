package route

import (
	"testing"

	"github.com/walhook/walhook/dispatch"
)

// TestCoalesceKeepsTheFirstOld checks the old row a coalesced updated
// event carries for filters: the row before the transaction's first
// update, so that `old.status != "completed"` still sees the status the
// transaction started from when the row was touched again after.
func TestCoalesceKeepsTheFirstOld(t *testing.T) {
	withOld := func(e *dispatch.Event, old string) *dispatch.Event {
		e.Old = []byte(old)
		return e
	}
	tests := []struct {
		name string
		in   []*dispatch.Event
		want []string // each kept event's Old, in order
	}{
		{"UU", []*dispatch.Event{
			withOld(ev("order.updated", "1", 0, `completed`), `pending`),
			withOld(ev("order.updated", "1", 1, `completed2`), `completed`)},
			[]string{`pending`}},
		{"IUU", []*dispatch.Event{
			ev("order.created", "1", 0, `new`),
			withOld(ev("order.updated", "1", 1, `a`), `new`),
			withOld(ev("order.updated", "1", 2, `b`), `a`)},
			[]string{``, `new`}},
		{"UUD", []*dispatch.Event{
			withOld(ev("order.updated", "1", 0, `a`), `s0`),
			withOld(ev("order.updated", "1", 1, `b`), `a`),
			withOld(ev("order.deleted", "1", 2, `k`), `b`)},
			[]string{`s0`, `b`}},
		{"U alone keeps its own", []*dispatch.Event{withOld(ev("order.updated", "1", 0, `a`), `s0`)}, []string{`s0`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Coalesce(tt.in)
			if len(out) != len(tt.want) {
				t.Fatalf("kept %d events, want %d", len(out), len(tt.want))
			}
			for i, e := range out {
				if string(e.Old) != tt.want[i] {
					t.Errorf("event %d (%s): Old = %q, want %q", i, e.Topic, e.Old, tt.want[i])
				}
			}
		})
	}
}
