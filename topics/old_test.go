package topics

import (
	"testing"

	"github.com/walhook/walhook/cdc"
)

// TestMapOld checks Event.Old, which filters read as `old`: the whole old
// row (minus excluded columns) when the server sent it under REPLICA
// IDENTITY FULL, and nothing otherwise.
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
