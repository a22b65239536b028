package route

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/topics"
)

var ordersRel = &cdc.Relation{ID: 1, Schema: "public", Table: "orders", ReplicaIdentity: 'd',
	Columns: []cdc.Column{{Name: "id", TypeOID: pgtype.Int8OID, Key: true}, {Name: "v", TypeOID: pgtype.Int8OID}}}

func row(id, v int) []cdc.Value {
	return []cdc.Value{{Kind: cdc.KindText, Data: []byte(fmt.Sprint(id))}, {Kind: cdc.KindText, Data: []byte(fmt.Sprint(v))}}
}

// change builds the change at index i: I, U or D of row id, version v.
func change(i int, op byte, id, v int) cdc.Change {
	ch := cdc.Change{Rel: ordersRel, Index: uint32(i)}
	switch op {
	case 'I':
		ch.Op, ch.New = cdc.OpInsert, row(id, v)
	case 'U':
		ch.Op, ch.New = cdc.OpUpdate, row(id, v)
	case 'D':
		ch.Op, ch.Old = cdc.OpDelete, row(id, v)[:1]
	}
	return ch
}

// run routes batches through a Router and returns each dispatch batch as
// "commit:last:event{body},…".
func run(t *testing.T, opts Options, in ...*cdc.Batch) []string {
	t.Helper()
	opts.Mapper = topics.NewMapper([]topics.Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.Metrics = NewMetrics(prometheus.NewRegistry())
	src := make(chan *cdc.Batch, len(in))
	for _, b := range in {
		src <- b
	}
	close(src)
	out := make(chan *dispatch.Batch, 100)
	if err := New(opts).Run(context.Background(), src, out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for b := range out {
		var evs []string
		for _, e := range b.Events {
			evs = append(evs, fmt.Sprintf("%s%s", e.Topic.Event, e.Body))
		}
		got = append(got, fmt.Sprintf("%d:%v:%s", b.Commit, b.Last, strings.Join(evs, ",")))
	}
	return got
}

// TestRouterCoalescesWholeTransactions: a transaction's changes are
// coalesced across its batches; one above coalesce_max goes on change by
// change; a resent transaction (after a reconnect) is routed once.
func TestRouterCoalescesWholeTransactions(t *testing.T) {
	tx := func() []*cdc.Batch {
		return []*cdc.Batch{
			{CommitLSN: 10, Changes: []cdc.Change{change(0, 'I', 1, 1), change(1, 'U', 1, 2)}},
			{CommitLSN: 10, Changes: []cdc.Change{change(2, 'U', 1, 3), change(3, 'D', 1, 3)}, Last: true, EndLSN: 11},
		}
	}
	for _, tc := range []struct {
		name string
		opts Options
		in   []*cdc.Batch
		want string
	}{
		{"coalesced across batches", Options{Coalesce: true, CoalesceMax: 10}, tx(),
			`10:true:created{"id":1,"v":3},updated{"id":1,"v":3},deleted{"id":1}`},
		{"over coalesce_max: change by change", Options{Coalesce: true, CoalesceMax: 3}, tx(),
			`10:true:created{"id":1,"v":1},updated{"id":1,"v":2},updated{"id":1,"v":3},deleted{"id":1}`},
		{"over coalesce_max in the first batch: streamed", Options{Coalesce: true, CoalesceMax: 1}, tx(),
			`10:false:created{"id":1,"v":1},updated{"id":1,"v":2} | 10:true:updated{"id":1,"v":3},deleted{"id":1}`},
		{"coalesce none", Options{Coalesce: false}, tx(),
			`10:false:created{"id":1,"v":1},updated{"id":1,"v":2} | 10:true:updated{"id":1,"v":3},deleted{"id":1}`},
		{"a resent transaction is routed once", Options{Coalesce: true, CoalesceMax: 10}, append(tx(), tx()...),
			`10:true:created{"id":1,"v":3},updated{"id":1,"v":3},deleted{"id":1}`},
		{"a resent part is not routed twice", Options{Coalesce: false}, append(tx()[:1], tx()...),
			`10:false:created{"id":1,"v":1},updated{"id":1,"v":2} | 10:false: | 10:true:updated{"id":1,"v":3},deleted{"id":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(run(t, tc.opts, tc.in...), " | "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
