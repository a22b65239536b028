package topics

import (
	"testing"

	"github.com/walhook/walhook/cdc"
)

// TestMapOld checks Event.Old, which filters read as `old`: with KeepOld,
// the whole old row (minus excluded columns) when the server sent it
// under REPLICA IDENTITY FULL, and nothing otherwise; without KeepOld,
// never.
func TestMapOld(t *testing.T) {
	before := []cdc.Value{text("42"), text("old@example.com"), text("$2y$10$old"), {Kind: cdc.KindNull}}
	const wantOld = `{"id":42,"email":"old@example.com","meta":null}`
	tests := []struct {
		name    string
		deleted string
		ch      cdc.Change
		want    string // "" for no Old
	}{
		{name: "insert", ch: cdc.Change{Op: cdc.OpInsert, Rel: customersRel('f'), New: customerRow}},
		{name: "update under full identity",
			ch:   cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('f'), New: customerRow, Old: before},
			want: wantOld},
		{name: "update under the default identity",
			ch: cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('d'), New: customerRow}},
		{name: "update of the key under the default identity",
			ch: cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('d'), New: customerRow, Old: keyOnly}},
		{name: "delete under full identity",
			ch:   cdc.Change{Op: cdc.OpDelete, Rel: customersRel('f'), Old: before},
			want: wantOld},
		{name: "delete old_row under full identity", deleted: DeletedPayloadOldRow,
			ch:   cdc.Change{Op: cdc.OpDelete, Rel: customersRel('f'), Old: before},
			want: wantOld},
		{name: "delete under the default identity",
			ch: cdc.Change{Op: cdc.OpDelete, Rel: customersRel('d'), Old: keyOnly}},
		{name: "an old row with unchanged TOASTed values is not whole",
			ch: cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('f'), New: customerRow,
				Old: []cdc.Value{text("42"), {Kind: cdc.KindUnchanged}, text("x"), {Kind: cdc.KindNull}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMapper(customerResources(tt.deleted))
			if ev, _, _ := m.Map(&tt.ch); ev.Old != nil {
				t.Errorf("Old = %s without KeepOld", ev.Old)
			}
			m.KeepOld(true)
			ev, ok, err := m.Map(&tt.ch)
			if err != nil || !ok {
				t.Fatalf("Map = %v, %v", ok, err)
			}
			if string(ev.Old) != tt.want {
				t.Errorf("Old = %s, want %s", ev.Old, tt.want)
			}
			// Old is owned by the event: mapping the next change leaves it.
			if _, _, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: customersRel('f'), New: customerRow}); err != nil {
				t.Fatal(err)
			}
			if string(ev.Old) != tt.want {
				t.Errorf("Old changed to %s after the next Map", ev.Old)
			}
		})
	}
}

// BenchmarkMapOld measures what Event.Old (KeepOld) adds to mapping an
// order update:
// the same change under the default replica identity (no old row) and
// under REPLICA IDENTITY FULL (the old row encoded too).
//
//	go test -run '^$' -bench MapOld -benchmem ./topics
func BenchmarkMapOld(b *testing.B) {
	full := *orderRelation
	full.ReplicaIdentity = 'f'
	for _, bc := range []struct {
		name string
		ch   *cdc.Change
	}{
		{"default", &cdc.Change{Op: cdc.OpUpdate, Rel: orderRelation, New: orderRow}},
		{"full", &cdc.Change{Op: cdc.OpUpdate, Rel: &full, New: orderRow, Old: orderRow}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := NewMapper([]Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
			m.KeepOld(true)
			ev, ok, err := m.Map(bc.ch)
			if err != nil || !ok || (len(ev.Old) > 0) != (bc.name == "full") {
				b.Fatalf("Map: ok %v err %v old %s", ok, err, ev.Old)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := m.Map(bc.ch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
