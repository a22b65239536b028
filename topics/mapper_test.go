package topics

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walhook/walhook/cdc"
)

// customersRel is public.customers with an id key and a secret column.
func customersRel(identity byte) *cdc.Relation {
	return &cdc.Relation{ID: 7, Schema: "public", Table: "customers", ReplicaIdentity: identity,
		Columns: []cdc.Column{
			{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
			{Name: "email", TypeOID: pgtype.TextOID, Key: identity == 'f'},
			{Name: "password_hash", TypeOID: pgtype.TextOID, Key: identity == 'f'},
			{Name: "meta", TypeOID: pgtype.JSONBOID, Key: identity == 'f'},
		}}
}

var customerRow = []cdc.Value{text("42"), text("a@example.com"), text("$2y$10$secret"), text(`{"vip": true}`)}

// keyOnly is the old key tuple of a deletion under the default replica
// identity: the key column, NULL elsewhere.
var keyOnly = []cdc.Value{text("42"), {Kind: cdc.KindNull}, {Kind: cdc.KindNull}, {Kind: cdc.KindNull}}

func customerResources(deleted string) []Resource {
	return []Resource{
		{Name: "order", Schema: "public", Table: "orders", KeyColumns: []string{"id"}},
		{Name: "customer", Table: "customers", KeyColumns: []string{"id"},
			ExcludeColumns: []string{"password_hash"}, DeletedPayload: deleted},
	}
}

func TestMapTopicsAndBodies(t *testing.T) {
	tests := []struct {
		name      string
		deleted   string
		ch        cdc.Change
		wantTopic string
		wantKey   string
		wantBody  string
	}{
		{
			name:      "insert",
			ch:        cdc.Change{Op: cdc.OpInsert, Rel: customersRel('d'), New: customerRow, Index: 3},
			wantTopic: "customer.created", wantKey: "42",
			wantBody: `{"id":42,"email":"a@example.com","meta":{"vip": true}}`,
		},
		{
			name:      "update",
			ch:        cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('d'), New: customerRow, Index: 3},
			wantTopic: "customer.updated", wantKey: "42",
			wantBody: `{"id":42,"email":"a@example.com","meta":{"vip": true}}`,
		},
		{
			name:      "update under full identity",
			ch:        cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('f'), New: customerRow, Old: customerRow, Index: 3},
			wantTopic: "customer.updated", wantKey: "42",
			wantBody: `{"id":42,"email":"a@example.com","meta":{"vip": true}}`,
		},
		{
			name:      "delete sends the key",
			ch:        cdc.Change{Op: cdc.OpDelete, Rel: customersRel('d'), Old: keyOnly, Index: 3},
			wantTopic: "customer.deleted", wantKey: "42",
			wantBody: `{"id":42}`,
		},
		{
			name:      "delete sends the key under full identity",
			ch:        cdc.Change{Op: cdc.OpDelete, Rel: customersRel('f'), Old: customerRow, Index: 3},
			wantTopic: "customer.deleted", wantKey: "42",
			wantBody: `{"id":42}`,
		},
		{
			name:      "delete old_row sends the old row",
			deleted:   DeletedPayloadOldRow,
			ch:        cdc.Change{Op: cdc.OpDelete, Rel: customersRel('f'), Old: customerRow, Index: 3},
			wantTopic: "customer.deleted", wantKey: "42",
			wantBody: `{"id":42,"email":"a@example.com","meta":{"vip": true}}`,
		},
		{
			name:      "delete old_row without full identity sends the key",
			deleted:   DeletedPayloadOldRow,
			ch:        cdc.Change{Op: cdc.OpDelete, Rel: customersRel('d'), Old: keyOnly, Index: 3},
			wantTopic: "customer.deleted", wantKey: "42",
			wantBody: `{"id":42}`,
		},
		{
			name:      "delete without old row",
			ch:        cdc.Change{Op: cdc.OpDelete, Rel: customersRel('d'), Index: 3},
			wantTopic: "customer.deleted", wantKey: "",
			wantBody: `{}`,
		},
		{
			name: "delete with a short old row",
			ch: cdc.Change{Op: cdc.OpDelete, Rel: customersRel('d'),
				Old: []cdc.Value{text("42")}, Index: 3},
			wantTopic: "customer.deleted", wantKey: "42",
			wantBody: `{"id":42}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMapper(customerResources(tt.deleted))
			ev, ok, err := m.Map(&tt.ch)
			if err != nil || !ok {
				t.Fatalf("Map = ok %v, err %v; want an event", ok, err)
			}
			if got := ev.Topic.String(); got != tt.wantTopic {
				t.Errorf("topic = %q, want %q", got, tt.wantTopic)
			}
			if ev.Key != tt.wantKey {
				t.Errorf("key = %q, want %q", ev.Key, tt.wantKey)
			}
			if string(ev.Body) != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", ev.Body, tt.wantBody)
			}
			if ev.Index != 3 {
				t.Errorf("index = %d, want 3", ev.Index)
			}
			if ev.Omitted != nil {
				t.Errorf("omitted = %q, want nil", ev.Omitted)
			}
			if strings.Contains(string(ev.Body), "password_hash") || strings.Contains(string(ev.Body), "secret") {
				t.Errorf("body %s holds the excluded column", ev.Body)
			}
			checkJSON(t, ev.Body)
		})
	}
}

func TestMapDeleteFallsBackToWhatOldHas(t *testing.T) {
	// The configured key is not the replica identity: the server sends the
	// identity index's column (sku), not id.
	rel := &cdc.Relation{ID: 9, Schema: "public", Table: "products", ReplicaIdentity: 'i',
		Columns: []cdc.Column{
			{Name: "id", TypeOID: pgtype.Int8OID},
			{Name: "sku", TypeOID: pgtype.TextOID, Key: true},
			{Name: "name", TypeOID: pgtype.TextOID},
		}}
	m := NewMapper([]Resource{{Name: "product", Table: "products", KeyColumns: []string{"id"}}})
	old := []cdc.Value{{Kind: cdc.KindNull}, text("SKU-1"), {Kind: cdc.KindNull}}
	ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpDelete, Rel: rel, Old: old})
	if err != nil || !ok {
		t.Fatalf("Map = ok %v, err %v", ok, err)
	}
	if want := `{"sku":"SKU-1"}`; string(ev.Body) != want {
		t.Errorf("body = %s, want %s", ev.Body, want)
	}
	if ev.Key != "SKU-1" {
		t.Errorf("key = %q, want SKU-1", ev.Key)
	}

	// A configured key column the table does not have.
	m = NewMapper([]Resource{{Name: "product", Table: "products", KeyColumns: []string{"gone"}}})
	ev, ok, err = m.Map(&cdc.Change{Op: cdc.OpDelete, Rel: rel, Old: old})
	if err != nil || !ok || string(ev.Body) != `{"sku":"SKU-1"}` || ev.Key != "SKU-1" {
		t.Errorf("Map with a missing key column = %s key %q ok %v err %v", ev.Body, ev.Key, ok, err)
	}
}

func TestMapUnmappedTableIgnored(t *testing.T) {
	m := NewMapper(customerResources(""))
	for _, rel := range []*cdc.Relation{
		{ID: 1, Schema: "public", Table: "sessions", Columns: []cdc.Column{{Name: "id", TypeOID: pgtype.Int4OID}}},
		{ID: 2, Schema: "audit", Table: "customers", Columns: []cdc.Column{{Name: "id", TypeOID: pgtype.Int4OID}}},
	} {
		for _, op := range []cdc.Op{cdc.OpInsert, cdc.OpUpdate, cdc.OpDelete} {
			ev, ok, err := m.Map(&cdc.Change{Op: op, Rel: rel, New: []cdc.Value{text("x")}, Old: []cdc.Value{text("x")}})
			if ok || err != nil || ev.Body != nil {
				t.Errorf("%s on %s: ev %+v ok %v err %v; want it ignored", op, rel.QualifiedName(), ev, ok, err)
			}
		}
	}
}

func TestMapBadChanges(t *testing.T) {
	m := NewMapper(customerResources(""))
	tests := []struct {
		name string
		ch   cdc.Change
		want string
	}{
		{"no relation", cdc.Change{Op: cdc.OpInsert}, "no relation"},
		{"unknown op", cdc.Change{Op: 99, Rel: customersRel('d')}, "unknown operation"},
		{"short row", cdc.Change{Op: cdc.OpInsert, Rel: customersRel('d'), New: customerRow[:2]}, "row has 2 values, relation has 4 columns"},
		{"no new row", cdc.Change{Op: cdc.OpUpdate, Rel: customersRel('d')}, "row has 0 values"},
		{"malformed value", cdc.Change{Op: cdc.OpInsert, Rel: customersRel('d'),
			New: []cdc.Value{text("4x2"), text(""), text(""), text("{}")}}, `public.customers column "id" (int8): malformed integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := m.Map(&tt.ch)
			if err == nil || ok || ev.Body != nil {
				t.Fatalf("Map = %+v, ok %v, err %v; want an error", ev, ok, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestMapExcludedColumnsNeverInBody(t *testing.T) {
	rel := customersRel('f')
	for _, deleted := range []string{DeletedPayloadKey, DeletedPayloadOldRow} {
		// password_hash is also a key column here, which must not bring it back.
		res := customerResources(deleted)
		res[1].KeyColumns = []string{"id", "password_hash"}
		m := NewMapper(res)
		for _, op := range []cdc.Op{cdc.OpInsert, cdc.OpUpdate, cdc.OpDelete} {
			ev, ok, err := m.Map(&cdc.Change{Op: op, Rel: rel, New: customerRow, Old: customerRow})
			if err != nil || !ok {
				t.Fatalf("%s (%s): ok %v err %v", op, deleted, ok, err)
			}
			if strings.Contains(string(ev.Body), "password_hash") || strings.Contains(string(ev.Body), "secret") {
				t.Errorf("%s (%s): body %s holds the excluded column", op, deleted, ev.Body)
			}
			checkJSON(t, ev.Body)
		}
	}
}

func TestMapMultiColumnKeys(t *testing.T) {
	rel := &cdc.Relation{ID: 11, Schema: "public", Table: "order_notes", ReplicaIdentity: 'd',
		Columns: []cdc.Column{
			{Name: "order_id", TypeOID: pgtype.TextOID, Key: true},
			{Name: "note_id", TypeOID: pgtype.TextOID, Key: true},
			{Name: "body", TypeOID: pgtype.TextOID},
		}}
	m := NewMapper([]Resource{{Name: "order_note", Table: "order_notes", KeyColumns: []string{"order_id", "note_id"}}})
	null := cdc.Value{Kind: cdc.KindNull}
	keys := [][2]cdc.Value{
		{text("1"), text("2")},
		{text("1,2"), text("")},
		{text("1"), text(",2")},
		{text("1\\"), text("2")},
		{text("1"), text("\\2")},
		{text("1\\,2"), text("")},
		{text(""), text("1,2")},
		{text(`\N`), text("")},
		{null, text("")},
		{text(""), text("")},
		{text(","), text("")},
		{text(""), text(",")},
	}
	seen := make(map[string][2]cdc.Value)
	for _, k := range keys {
		ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: rel, New: []cdc.Value{k[0], k[1], text("x")}})
		if err != nil || !ok {
			t.Fatalf("Map: ok %v err %v", ok, err)
		}
		if prev, dup := seen[ev.Key]; dup {
			t.Errorf("keys %q and %q both map to Key %q", prev, k, ev.Key)
		}
		seen[ev.Key] = k

		// A deletion of the same row has the same Key.
		del, ok, err := m.Map(&cdc.Change{Op: cdc.OpDelete, Rel: rel, Old: []cdc.Value{k[0], k[1], null}})
		if err != nil || !ok {
			t.Fatalf("Map delete: ok %v err %v", ok, err)
		}
		if k[0].Kind == cdc.KindText && del.Key != ev.Key {
			t.Errorf("delete Key %q differs from insert Key %q", del.Key, ev.Key)
		}
		checkJSON(t, del.Body)
	}
	ev, _, _ := m.Map(&cdc.Change{Op: cdc.OpDelete, Rel: rel, Old: []cdc.Value{text("7"), text("a,b"), null}})
	if want := `{"order_id":"7","note_id":"a,b"}`; string(ev.Body) != want {
		t.Errorf("deleted body = %s, want %s", ev.Body, want)
	}
	if want := `7,a\,b`; ev.Key != want {
		t.Errorf("deleted key = %q, want %q", ev.Key, want)
	}
}

func TestMapAlterTableRecompiles(t *testing.T) {
	m := NewMapper([]Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
	before := &cdc.Relation{ID: 5, Schema: "public", Table: "orders", ReplicaIdentity: 'd',
		Columns: []cdc.Column{
			{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
			{Name: "total", TypeOID: pgtype.TextOID},
		}}
	// ALTER TABLE orders ALTER total TYPE numeric, ADD paid boolean.
	after := &cdc.Relation{ID: 5, Schema: "public", Table: "orders", ReplicaIdentity: 'd',
		Columns: []cdc.Column{
			{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
			{Name: "total", TypeOID: pgtype.NumericOID},
			{Name: "paid", TypeOID: pgtype.BoolOID},
		}}
	steps := []struct {
		rel  *cdc.Relation
		row  []cdc.Value
		want string
	}{
		{before, []cdc.Value{text("1"), text("abc")}, `{"id":1,"total":"abc"}`},
		{after, []cdc.Value{text("1"), text("12.50"), text("t")}, `{"id":1,"total":"12.50","paid":true}`},
		{after, []cdc.Value{text("2"), text("3.00"), text("f")}, `{"id":2,"total":"3.00","paid":false}`},
	}
	for i, s := range steps {
		ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpUpdate, Rel: s.rel, New: s.row})
		if err != nil || !ok {
			t.Fatalf("step %d: ok %v err %v", i, ok, err)
		}
		if string(ev.Body) != s.want {
			t.Errorf("step %d: body %s, want %s", i, ev.Body, s.want)
		}
	}
	// The old relation's text no longer passes as numeric: the encoder is new.
	if _, _, err := m.Map(&cdc.Change{Op: cdc.OpUpdate, Rel: after, New: []cdc.Value{text("1"), text("abc"), text("t")}}); err == nil {
		t.Errorf("a non-numeric total was accepted after the column became numeric")
	}
	if len(m.relations) != 1 || m.relations[5].rel != after {
		t.Errorf("cache holds %d relations, want only the newest of ID 5", len(m.relations))
	}
}

func TestMapUnchangedToastOmitted(t *testing.T) {
	rel := &cdc.Relation{ID: 3, Schema: "public", Table: "products", ReplicaIdentity: 'd',
		Columns: []cdc.Column{
			{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
			{Name: "description", TypeOID: pgtype.TextOID},
			{Name: "price", TypeOID: pgtype.NumericOID},
			{Name: "images", TypeOID: pgtype.JSONBOID},
		}}
	m := NewMapper([]Resource{{Name: "product", Table: "products", KeyColumns: []string{"id"}}})
	unchanged := cdc.Value{Kind: cdc.KindUnchanged}
	ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpUpdate, Rel: rel,
		New: []cdc.Value{text("8"), unchanged, text("9.99"), unchanged}})
	if err != nil || !ok {
		t.Fatalf("Map: ok %v err %v", ok, err)
	}
	if want := `{"id":8,"price":"9.99"}`; string(ev.Body) != want {
		t.Errorf("body = %s, want %s", ev.Body, want)
	}
	if want := []string{"description", "images"}; !slices.Equal(ev.Omitted, want) {
		t.Errorf("omitted = %q, want %q", ev.Omitted, want)
	}

	// The first column unchanged: no stray comma.
	ev, _, err = m.Map(&cdc.Change{Op: cdc.OpUpdate, Rel: rel,
		New: []cdc.Value{unchanged, unchanged, text("1"), text("[]")}, Old: []cdc.Value{text("8")}})
	if err != nil || string(ev.Body) != `{"price":"1","images":[]}` {
		t.Errorf("body = %s, err %v", ev.Body, err)
	}
	if ev.Key != "8" {
		t.Errorf("key of a row whose key is unchanged = %q, want it from the old row", ev.Key)
	}
	checkJSON(t, ev.Body)
}

func TestMapAction(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		content string
		want    string
	}{
		{"json object", "order_paid", `{"order_id": 42}`, `{"action":"order_paid","arg":{"order_id": 42}}`},
		{"json number", "recount", `17`, `{"action":"recount","arg":17}`},
		{"json string", "note", `"hi"`, `{"action":"note","arg":"hi"}`},
		{"text", "note", `hello "world"`, `{"action":"note","arg":"hello \"world\""}`},
		{"empty", "ping", ``, `{"action":"ping","arg":""}`},
		{"invalid utf-8 text", "raw", "\xff\x00", `{"action":"raw","arg":"` + "\uFFFD" + `\u0000"}`},
		{"invalid utf-8 in json", "raw", "[\"\xff\"]", `{"action":"raw","arg":["` + "\uFFFD" + `"]}`},
		{"prefix escaped", `odd"name`, `1`, `{"action":"odd\"name","arg":1}`},
	}
	m := NewMapper(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpMessage, Prefix: tt.prefix, Content: []byte(tt.content), Index: 2})
			if err != nil || !ok {
				t.Fatalf("Map: ok %v err %v", ok, err)
			}
			if ev.Topic != (Topic{Resource: ResourceAction, Event: tt.prefix}) || !ev.Topic.IsAction() {
				t.Errorf("topic = %+v, want action.%s", ev.Topic, tt.prefix)
			}
			if string(ev.Body) != tt.want {
				t.Errorf("body\n got %s\nwant %s", ev.Body, tt.want)
			}
			if ev.Key != "" || ev.Index != 2 {
				t.Errorf("key %q index %d, want \"\" and 2", ev.Key, ev.Index)
			}
			checkJSON(t, ev.Body)
		})
	}
}

func TestMapBodyIsOwned(t *testing.T) {
	m := NewMapper(customerResources(""))
	first, _, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: customersRel('d'), New: customerRow})
	if err != nil {
		t.Fatal(err)
	}
	want := string(first.Body)
	if len(first.Body) != cap(first.Body) {
		t.Errorf("body has len %d, cap %d; want it exactly sized", len(first.Body), cap(first.Body))
	}
	other := []cdc.Value{text("43"), text("zzzzzzzzzzzzzzzzzzzzzzz"), text("x"), text("[]")}
	if _, _, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: customersRel('d'), New: other}); err != nil {
		t.Fatal(err)
	}
	if string(first.Body) != want {
		t.Errorf("the next Map changed an earlier body: %s", first.Body)
	}
}

func TestMapperCacheBounded(t *testing.T) {
	m := NewMapper(customerResources(""))
	for id := range uint32(maxCachedRelations + 10) {
		rel := customersRel('d')
		rel.ID = id
		if _, _, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: rel, New: customerRow}); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.relations) > maxCachedRelations {
		t.Errorf("cache holds %d relations, more than %d", len(m.relations), maxCachedRelations)
	}
}
