package topics

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walhook/walhook/cdc"
)

// fuzzOIDs are the column types FuzzMap feeds every input to.
var fuzzOIDs = []uint32{
	pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
	pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID, pgtype.BoolOID,
	pgtype.JSONOID, pgtype.JSONBOID,
	pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.UUIDOID,
	pgtype.InetOID, pgtype.XMLOID, pgtype.IntervalOID, enumOID,
	pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID, pgtype.TimeOID, pgtype.ByteaOID,
	pgtype.Int4ArrayOID, pgtype.Int8ArrayOID, pgtype.TextArrayOID, pgtype.NumericArrayOID,
	pgtype.Float8ArrayOID, pgtype.BoolArrayOID, pgtype.JSONBArrayOID, pgtype.JSONArrayOID,
	pgtype.TimestamptzArrayOID, pgtype.TimestampArrayOID, pgtype.DateArrayOID, pgtype.TimeArrayOID,
	pgtype.ByteaArrayOID, pgtype.UUIDArrayOID, pgtype.BoxArrayOID,
}

// FuzzMap feeds arbitrary bytes as the value of a column of every type, as
// a key value and as a logical message: Map must never panic, and every
// event it returns must have a valid UTF-8 JSON body.
func FuzzMap(f *testing.F) {
	for _, s := range []string{
		"123", "-1.5e+30", "NaN", "12.50", "t", `{"a": [1, {"b": null}]}`, "hello \"x\"\n",
		"2026-11-23 10:53:34.123456+00", "2026-11-23 10:53:34", "0044-03-15 BC", "24:00:00", "infinity",
		`\x0102ff`, "{1,NULL,3}", "{{1,2},{3,NULL}}", `{"a,b",NULL,"\\"}`, "[0:1]={1,2}", `{"{\"a\": 1}"}`,
		`{"2026-11-23 10:53:34+00",-infinity}`, "{(1,1),(0,0);(2,2),(1,1)}", "\xff\x00", "",
	} {
		f.Add([]byte(s))
	}
	m := NewMapper([]Resource{{Name: "thing", Table: "things", KeyColumns: []string{"k"}, DeletedPayload: DeletedPayloadOldRow}})
	rels := make([]*cdc.Relation, len(fuzzOIDs))
	for i, oid := range fuzzOIDs {
		rels[i] = &cdc.Relation{ID: uint32(i), Schema: "public", Table: "things", ReplicaIdentity: 'f',
			Columns: []cdc.Column{{Name: "k", TypeOID: pgtype.TextOID, Key: true}, {Name: "v", TypeOID: oid, Key: true}}}
	}
	check := func(t *testing.T, what string, data []byte, ev Event, ok bool, err error) {
		t.Helper()
		if err != nil || !ok {
			return
		}
		if !json.Valid(ev.Body) || !utf8.Valid(ev.Body) {
			t.Fatalf("%s of %q: body %q is not valid UTF-8 JSON", what, data, ev.Body)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := cdc.Value{Kind: cdc.KindText, Data: data}
		for _, rel := range rels {
			row := []cdc.Value{v, v}
			ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: rel, New: row})
			check(t, "insert as "+m.codec.typeName(rel.Columns[1].TypeOID), data, ev, ok, err)
			ev, ok, err = m.Map(&cdc.Change{Op: cdc.OpDelete, Rel: rel, Old: row})
			check(t, "delete", data, ev, ok, err)
		}
		ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpMessage, Prefix: string(data), Content: data})
		if err != nil || !ok {
			t.Fatalf("message %q: ok %v, err %v", data, ok, err)
		}
		check(t, "message", data, ev, ok, err)
	})
}
