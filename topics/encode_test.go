package topics

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walhook/walhook/cdc"
)

// Type OIDs of user-defined types, which differ in every database.
const (
	enumOID      = 16385
	enumArrayOID = 16384
	citextOID    = 16500
)

// mapValue maps an insert of a one-column row (column "v" of type oid) to
// its body.
func mapValue(t testing.TB, oid uint32, v cdc.Value) ([]byte, error) {
	t.Helper()
	m := NewMapper([]Resource{{Name: "thing", Schema: "public", Table: "things"}})
	rel := &cdc.Relation{ID: 1, Schema: "public", Table: "things", ReplicaIdentity: 'd',
		Columns: []cdc.Column{{Name: "v", TypeOID: oid}}}
	ev, ok, err := m.Map(&cdc.Change{Op: cdc.OpInsert, Rel: rel, New: []cdc.Value{v}})
	if err != nil {
		return nil, err
	}
	if !ok {
		t.Fatalf("insert into a mapped table was not mapped")
	}
	return ev.Body, nil
}

func text(s string) cdc.Value { return cdc.Value{Kind: cdc.KindText, Data: []byte(s)} }

func checkJSON(t testing.TB, body []byte) {
	t.Helper()
	if !json.Valid(body) {
		t.Errorf("body is not valid JSON: %s", body)
	}
	if !utf8.Valid(body) {
		t.Errorf("body is not valid UTF-8: %q", body)
	}
}

func TestTyping(t *testing.T) {
	null := cdc.Value{Kind: cdc.KindNull}
	tests := []struct {
		name string
		oid  uint32
		in   cdc.Value
		want string // the JSON of the value
	}{
		// Integers.
		{"int4", pgtype.Int4OID, text("123"), `123`},
		{"int4 negative", pgtype.Int4OID, text("-5"), `-5`},
		{"int4 zero", pgtype.Int4OID, text("0"), `0`},
		{"int2 min", pgtype.Int2OID, text("-32768"), `-32768`},
		{"int8 max", pgtype.Int8OID, text("9223372036854775807"), `9223372036854775807`},
		{"oid", pgtype.OIDOID, text("4294967295"), `4294967295`},
		{"int8 null", pgtype.Int8OID, null, `null`},

		// Floating point.
		{"float8", pgtype.Float8OID, text("1.5"), `1.5`},
		{"float8 negative zero", pgtype.Float8OID, text("-0"), `-0`},
		{"float8 exponent", pgtype.Float8OID, text("1e+30"), `1e+30`},
		{"float8 shortest", pgtype.Float8OID, text("1.2345678901234567e-05"), `1.2345678901234567e-05`},
		{"float4 max", pgtype.Float4OID, text("3.4028235e+38"), `3.4028235e+38`},
		{"float8 NaN", pgtype.Float8OID, text("NaN"), `"NaN"`},
		{"float8 Infinity", pgtype.Float8OID, text("Infinity"), `"Infinity"`},
		{"float4 -Infinity", pgtype.Float4OID, text("-Infinity"), `"-Infinity"`},
		{"float8 null", pgtype.Float8OID, null, `null`},

		// Numeric keeps its exact text.
		{"numeric", pgtype.NumericOID, text("12.50"), `"12.50"`},
		{"numeric precision", pgtype.NumericOID, text("12345678901234567890.000000000001"), `"12345678901234567890.000000000001"`},
		{"numeric negative", pgtype.NumericOID, text("-0.5"), `"-0.5"`},
		{"numeric integer", pgtype.NumericOID, text("0"), `"0"`},
		{"numeric NaN", pgtype.NumericOID, text("NaN"), `"NaN"`},
		{"numeric Infinity", pgtype.NumericOID, text("Infinity"), `"Infinity"`},
		{"numeric -Infinity", pgtype.NumericOID, text("-Infinity"), `"-Infinity"`},
		{"numeric null", pgtype.NumericOID, null, `null`},

		// Booleans.
		{"bool true", pgtype.BoolOID, text("t"), `true`},
		{"bool false", pgtype.BoolOID, text("f"), `false`},
		{"bool null", pgtype.BoolOID, null, `null`},

		// JSON is embedded as the server printed it.
		{"jsonb object", pgtype.JSONBOID, text(`{"a": 1}`), `{"a": 1}`},
		{"jsonb nested", pgtype.JSONBOID, text(`{"a": {"b": [1, 2.5, {"c": null}], "d": true}, "e": "x\"y\\z\u00e9"}`),
			`{"a": {"b": [1, 2.5, {"c": null}], "d": true}, "e": "x\"y\\z\u00e9"}`},
		{"jsonb array", pgtype.JSONBOID, text(`[1, "two", 3.5, false]`), `[1, "two", 3.5, false]`},
		{"jsonb string", pgtype.JSONBOID, text(`"str"`), `"str"`},
		{"jsonb json null", pgtype.JSONBOID, text(`null`), `null`},
		{"jsonb unicode", pgtype.JSONBOID, text(`{"name": "Zoë ✓ 🎉"}`), `{"name": "Zoë ✓ 🎉"}`},
		{"json white space kept", pgtype.JSONOID, text(" {\"a\":1,\n \"b\":[]} "), " {\"a\":1,\n \"b\":[]} "},
		{"json sql null", pgtype.JSONOID, null, `null`},

		// Text-like types and every unknown type are JSON strings.
		{"text", pgtype.TextOID, text("hello"), `"hello"`},
		{"text empty", pgtype.TextOID, text(""), `""`},
		{"text escapes", pgtype.TextOID, text("a\"b\\c\n\r\t\b\f\x01\x1f\x7f</>&"), `"a\"b\\c\n\r\t\b\f\u0001\u001f` + "\x7f" + `</>&"`},
		{"text unicode", pgtype.TextOID, text("héllo ✓ 🎉 \u2028"), "\"héllo ✓ 🎉 \u2028\""},
		{"text invalid utf-8", pgtype.TextOID, text("a\xffb\xe2\x82c\xc0"), "\"a\uFFFDb\uFFFD\uFFFDc\uFFFD\""},
		{"text null", pgtype.TextOID, null, `null`},
		{"varchar", pgtype.VarcharOID, text("Processing"), `"Processing"`},
		{"bpchar keeps padding", pgtype.BPCharOID, text("ab  "), `"ab  "`},
		{"name", pgtype.NameOID, text("orders"), `"orders"`},
		{"uuid", pgtype.UUIDOID, text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{"inet", pgtype.InetOID, text("192.168.0.1/24"), `"192.168.0.1/24"`},
		{"cidr", pgtype.CIDROID, text("10.0.0.0/8"), `"10.0.0.0/8"`},
		{"macaddr", pgtype.MacaddrOID, text("08:00:2b:01:02:03"), `"08:00:2b:01:02:03"`},
		{"money", 790, text("$1,234.56"), `"$1,234.56"`},
		{"xml", pgtype.XMLOID, text(`<a href="x">1</a>`), `"<a href=\"x\">1</a>"`},
		{"interval", pgtype.IntervalOID, text("P1Y2M3DT4H5M6.5S"), `"P1Y2M3DT4H5M6.5S"`},
		{"citext", citextOID, text("Mixed Case"), `"Mixed Case"`},
		{"enum", enumOID, text("processing"), `"processing"`},
		{"enum array is unknown", enumArrayOID, text("{a,b}"), `"{a,b}"`},
		{"timetz is a string", pgtype.TimetzOID, text("10:53:34+02"), `"10:53:34+02"`},
		{"unknown null", enumOID, null, `null`},

		// timestamptz: RFC 3339 in UTC with the fraction the value has.
		{"timestamptz micro", pgtype.TimestamptzOID, text("2026-11-23 10:53:34.123456+00"), `"2026-11-23T10:53:34.123456Z"`},
		{"timestamptz no fraction", pgtype.TimestamptzOID, text("2026-11-23 10:53:34+00"), `"2026-11-23T10:53:34Z"`},
		{"timestamptz short fraction", pgtype.TimestamptzOID, text("2026-11-23 10:53:34.5+00"), `"2026-11-23T10:53:34.5Z"`},
		{"timestamptz offset to UTC", pgtype.TimestamptzOID, text("2026-11-24 02:23:34.5+15:30"), `"2026-11-23T10:53:34.5Z"`},
		{"timestamptz BC", pgtype.TimestamptzOID, text("0044-03-15 10:00:00+00 BC"), `"-0043-03-15T10:00:00Z"`},
		{"timestamptz far future", pgtype.TimestamptzOID, text("294276-12-31 23:59:59.999999+00"), `"294276-12-31T23:59:59.999999Z"`},
		{"timestamptz infinity", pgtype.TimestamptzOID, text("infinity"), `"infinity"`},
		{"timestamptz -infinity", pgtype.TimestamptzOID, text("-infinity"), `"-infinity"`},
		{"timestamptz null", pgtype.TimestamptzOID, null, `null`},

		// timestamp: no offset.
		{"timestamp micro", pgtype.TimestampOID, text("2026-11-23 10:53:34.123456"), `"2026-11-23T10:53:34.123456"`},
		{"timestamp no fraction", pgtype.TimestampOID, text("2026-11-23 10:53:34"), `"2026-11-23T10:53:34"`},
		{"timestamp 1 BC", pgtype.TimestampOID, text("0001-01-01 00:00:00 BC"), `"0000-01-01T00:00:00"`},
		{"timestamp infinity", pgtype.TimestampOID, text("infinity"), `"infinity"`},
		{"timestamp -infinity", pgtype.TimestampOID, text("-infinity"), `"-infinity"`},

		// date.
		{"date", pgtype.DateOID, text("2026-11-23"), `"2026-11-23"`},
		{"date leap day", pgtype.DateOID, text("2024-02-29"), `"2024-02-29"`},
		{"date BC", pgtype.DateOID, text("0044-03-15 BC"), `"-0043-03-15"`},
		{"date infinity", pgtype.DateOID, text("infinity"), `"infinity"`},
		{"date -infinity", pgtype.DateOID, text("-infinity"), `"-infinity"`},

		// time.
		{"time fraction", pgtype.TimeOID, text("10:53:34.5"), `"10:53:34.5"`},
		{"time micro", pgtype.TimeOID, text("00:00:00.000001"), `"00:00:00.000001"`},
		{"time whole", pgtype.TimeOID, text("10:53:34"), `"10:53:34"`},
		{"time end of day", pgtype.TimeOID, text("24:00:00"), `"24:00:00"`},

		// bytea: padded base64 of the bytes.
		{"bytea", pgtype.ByteaOID, text(`\x48656c6c6f`), `"SGVsbG8="`},
		{"bytea high bytes", pgtype.ByteaOID, text(`\x0102ff`), `"AQL/"`},
		{"bytea empty", pgtype.ByteaOID, text(`\x`), `""`},
		{"bytea null", pgtype.ByteaOID, null, `null`},

		// Arrays, elements typed by the same rules.
		{"int4[]", pgtype.Int4ArrayOID, text("{1,2,3}"), `[1,2,3]`},
		{"int4[] empty", pgtype.Int4ArrayOID, text("{}"), `[]`},
		{"int4[] NULL element", pgtype.Int4ArrayOID, text("{1,NULL,3}"), `[1,null,3]`},
		{"int4[][] with NULL", pgtype.Int4ArrayOID, text("{{1,2},{3,NULL}}"), `[[1,2],[3,null]]`},
		{"int8[][][]", pgtype.Int8ArrayOID, text("{{{1},{2}},{{3},{NULL}}}"), `[[[1],[2]],[[3],[null]]]`},
		{"int4[] lower bound", pgtype.Int4ArrayOID, text("[0:1]={5,6}"), `[5,6]`},
		{"int4[] null", pgtype.Int4ArrayOID, null, `null`},
		{"text[]", pgtype.TextArrayOID, text(`{a,"b c","d,e","NULL",NULL,""}`), `["a","b c","d,e","NULL",null,""]`},
		{"text[] escapes", pgtype.TextArrayOID, text(`{"a\"b","c\\d","{x}"}`), `["a\"b","c\\d","{x}"]`},
		{"text[][]", pgtype.TextArrayOID, text(`{{a,b},{NULL,"c d"}}`), `[["a","b"],[null,"c d"]]`},
		{"varchar[]", pgtype.VarcharArrayOID, text(`{vip,wholesale}`), `["vip","wholesale"]`},
		{"numeric[]", pgtype.NumericArrayOID, text("{1.50,NaN,-12345678901234567890.000000000001,NULL}"),
			`["1.50","NaN","-12345678901234567890.000000000001",null]`},
		{"float8[]", pgtype.Float8ArrayOID, text("{1.5,NaN,-Infinity,1e-07}"), `[1.5,"NaN","-Infinity",1e-07]`},
		{"bool[]", pgtype.BoolArrayOID, text("{t,f,NULL}"), `[true,false,null]`},
		{"jsonb[]", pgtype.JSONBArrayOID, text(`{"{\"a\": 1}","[1, 2]",NULL,"\"s\""}`), `[{"a": 1},[1, 2],null,"s"]`},
		{"timestamptz[]", pgtype.TimestamptzArrayOID, text(`{"2026-11-23 10:53:34.5+00",infinity,NULL}`),
			`["2026-11-23T10:53:34.5Z","infinity",null]`},
		{"timestamp[][]", pgtype.TimestampArrayOID, text(`{{"2026-11-23 10:53:34"},{"2026-11-24 00:00:00.25"}}`),
			`[["2026-11-23T10:53:34"],["2026-11-24T00:00:00.25"]]`},
		{"date[]", pgtype.DateArrayOID, text(`{2026-11-23,-infinity}`), `["2026-11-23","-infinity"]`},
		{"time[]", pgtype.TimeArrayOID, text(`{10:53:34.5}`), `["10:53:34.5"]`},
		{"bytea[]", pgtype.ByteaArrayOID, text(`{"\\x0102",NULL}`), `["AQI=",null]`},
		{"uuid[]", pgtype.UUIDArrayOID, text(`{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}`), `["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]`},
		{"box[] uses ; as delimiter", pgtype.BoxArrayOID, text(`{(1,1),(0,0);(2,2),(1,1)}`), `["(1,1),(0,0)","(2,2),(1,1)"]`},
		{"interval[]", pgtype.IntervalArrayOID, text(`{P1D,PT1H}`), `["P1D","PT1H"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := mapValue(t, tt.oid, tt.in)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if want := `{"v":` + tt.want + `}`; string(body) != want {
				t.Errorf("body\n got %s\nwant %s", body, want)
			}
			checkJSON(t, body)
		})
	}
}

func TestTypingMalformed(t *testing.T) {
	tests := []struct {
		name string
		oid  uint32
		in   string
	}{
		{"int4 empty", pgtype.Int4OID, ""},
		{"int4 letters", pgtype.Int4OID, "12a"},
		{"int4 fraction", pgtype.Int4OID, "1.5"},
		{"int4 leading zero", pgtype.Int4OID, "007"},
		{"int4 plus", pgtype.Int4OID, "+1"},
		{"int4 minus only", pgtype.Int4OID, "-"},
		{"int8 space", pgtype.Int8OID, " 1"},
		{"float8 lower-case nan", pgtype.Float8OID, "nan"},
		{"float8 inf", pgtype.Float8OID, "inf"},
		{"float8 trailing dot", pgtype.Float8OID, "1."},
		{"float8 leading dot", pgtype.Float8OID, ".5"},
		{"numeric exponent", pgtype.NumericOID, "1e5"},
		{"numeric word", pgtype.NumericOID, "abc"},
		{"numeric trailing dot", pgtype.NumericOID, "1."},
		{"numeric empty", pgtype.NumericOID, ""},
		{"numeric quote", pgtype.NumericOID, `1"`},
		{"bool word", pgtype.BoolOID, "true"},
		{"bool empty", pgtype.BoolOID, ""},
		{"jsonb truncated", pgtype.JSONBOID, `{"a": 1`},
		{"jsonb missing value", pgtype.JSONBOID, `{"a":}`},
		{"jsonb two values", pgtype.JSONBOID, `1 2`},
		{"json empty", pgtype.JSONOID, ``},
		{"json too deep", pgtype.JSONOID, strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)},
		{"timestamptz bad month", pgtype.TimestamptzOID, "2026-13-01 00:00:00+00"},
		{"timestamptz no offset", pgtype.TimestamptzOID, "2026-11-23 10:53:34"},
		{"timestamptz word", pgtype.TimestamptzOID, "yesterday"},
		{"timestamptz empty", pgtype.TimestamptzOID, ""},
		{"timestamp with offset", pgtype.TimestampOID, "2026-11-23 10:53:34+00"},
		{"date bad day", pgtype.DateOID, "2026-02-30"},
		{"date with time", pgtype.DateOID, "2026-02-03 10:00:00"},
		{"time hour out of range", pgtype.TimeOID, "25:00:00"},
		{"time short", pgtype.TimeOID, "10:53"},
		{"time negative", pgtype.TimeOID, "-1:00:00"},
		{"time signed fields", pgtype.TimeOID, "01:-1:00"},
		{"time empty fraction", pgtype.TimeOID, "10:00:00."},
		{"time long fraction", pgtype.TimeOID, "10:00:00.1234567"},
		{"bytea not hex", pgtype.ByteaOID, `\xzz`},
		{"bytea escape format", pgtype.ByteaOID, `abc`},
		{"bytea odd digits", pgtype.ByteaOID, `\x0`},
		{"int4[] bad element", pgtype.Int4ArrayOID, "{1,a}"},
		{"int4[] ragged", pgtype.Int4ArrayOID, "{{1,2},{3}}"},
		{"int4[] unterminated", pgtype.Int4ArrayOID, "{1"},
		{"int4[] empty text", pgtype.Int4ArrayOID, ""},
		{"int4[] not an array", pgtype.Int4ArrayOID, "1"},
		{"int4[] bounds mismatch", pgtype.Int4ArrayOID, "[1:3]={1,2}"},
		{"int4[] seven dimensions", pgtype.Int4ArrayOID, "{{{{{{{1}}}}}}}"},
		{"jsonb[] bad element", pgtype.JSONBArrayOID, `{"{"}`},
		{"timestamptz[] bad element", pgtype.TimestamptzArrayOID, `{"2026-11-23"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := mapValue(t, tt.oid, text(tt.in))
			if err == nil {
				t.Fatalf("Map(%q) = %s, want an error", tt.in, body)
			}
			msg := err.Error()
			for _, part := range []string{"public.things", `column "v"`} {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q does not name %s", msg, part)
				}
			}
			var m valueCodec
			m.types = pgtype.NewMap()
			if name := m.typeName(tt.oid); !strings.Contains(msg, "("+name+")") {
				t.Errorf("error %q does not name the type %s", msg, name)
			}
		})
	}
}

func TestUnknownValueKind(t *testing.T) {
	_, err := mapValue(t, pgtype.TextOID, cdc.Value{Kind: 9, Data: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "unknown value kind") {
		t.Fatalf("Map of a value of unknown kind: err = %v, want an unknown value kind error", err)
	}
}
