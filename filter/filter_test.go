package filter

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, src    string
		line, column int
		message      string // a part of the message
	}{
		{"empty", "  ", 0, 0, "must not be empty"},
		{"syntax", `row.status == "completed" &&`, 1, 29, "Syntax error"},
		{"syntax on a later line", "row.status == \"completed\"\n  && old.status !=", 2, 19, "Syntax error"},
		{"unknown variable", `rows.status == "completed"`, 1, 1, "undeclared reference to 'rows'"},
		{"unknown function", `lower(row.status) == "x"`, 1, 6, "undeclared reference to 'lower'"},
		{"event is a string", `event > 3`, 1, 7, "no matching overload"},
		{"not a boolean", `"a" + "b"`, 0, 0, "must be true or false, but gives string"},
		{"an integer", `size(row)`, 0, 0, "must be true or false, but gives int"},
		{"too long", strings.Repeat("true && ", MaxLength/8) + "true", 0, 0, "more than the 4096 allowed"},
		{"several problems", `rows.a == 1 && olds.b == 2`, 1, 1, "(and 1 more problem)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.src)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.src, p)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("Compile(%q) error %T %v, want *Error", tt.src, err, err)
			}
			if fe.Line != tt.line || fe.Column != tt.column || !strings.Contains(fe.Message, tt.message) {
				t.Errorf("Compile(%q) = line %d column %d %q, want line %d column %d and %q",
					tt.src, fe.Line, fe.Column, fe.Message, tt.line, tt.column, tt.message)
			}
		})
	}
}

// order is an order row as the payload encodes it.
const order = `{"id":727,"status":"completed","total":"129.35","qty":2,"weight":1.5,"paid":true,"note":null,` +
	`"billing":{"country":"US","city":"San Francisco","zip":94103},"tags":["gift","express"],` +
	`"line_items":[{"sku":"WOO-CAP","price":1.35},{"sku":"WOO-TEE","price":12}],` +
	`"date_paid":"2026-11-23T10:55:01.5Z","na\u00efve":"yes","big":123456789012345678901234567890}`

const orderBefore = `{"id":727,"status":"processing","total":"129.35","qty":2}`

func TestMatch(t *testing.T) {
	tests := []struct {
		name, src  string
		in         Input
		want       bool
		errMessage string // a part of the error's message; "" for none
	}{
		{"the example: completed now", `row.status == "completed" && old.status != "completed"`,
			Input{Event: "updated", Row: []byte(order), Old: []byte(orderBefore)}, true, ""},
		{"the example: already completed", `row.status == "completed" && old.status != "completed"`,
			Input{Event: "updated", Row: []byte(order), Old: []byte(order)}, false, ""},
		{"the example without the old row", `row.status == "completed" && old.status != "completed"`,
			Input{Event: "updated", Row: []byte(order)}, false, "no such key: status"},
		{"guarding with has", `row.status == "completed" && (!has(old.status) || old.status != "completed")`,
			Input{Event: "created", Row: []byte(order)}, true, ""},
		{"old is empty", `size(old) == 0`, Input{Event: "updated", Row: []byte(order)}, true, ""},
		{"event", `event == "deleted"`, Input{Event: "deleted", Row: []byte(`{"id":1}`)}, true, ""},
		{"integers", `row.id == 727 && row.qty > 1`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"doubles", `row.weight > 1.0 && row.weight < 2`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"an integer against a double", `row.qty < 2.5`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"numeric is a string", `double(row.total) > 100.0`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"booleans", `row.paid`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"null", `row.note == null`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"jsonb objects", `row.billing.country == "US" && row.billing.zip == 94103`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"arrays", `"gift" in row.tags && size(row.tags) == 2`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"comprehensions", `row.line_items.exists(i, i.sku == "WOO-CAP" && i.price < 2.0)`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"timestamps", `timestamp(row.date_paid) > timestamp("2026-01-01T00:00:00Z")`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"escaped keys", `row["naïve"] == "yes"`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"a number too big for int", `row.big > 1e29`, Input{Event: "created", Row: []byte(order)}, true, ""},
		{"false", `row.status == "pending"`, Input{Event: "created", Row: []byte(order)}, false, ""},
		{"a missing column", `row.colour == "red"`, Input{Event: "created", Row: []byte(order)}, false, "no such key: colour"},
		{"a type mismatch", `row.status > 3`, Input{Event: "created", Row: []byte(order)}, false, "no such overload"},
		{"not a boolean at run time", `row.status`, Input{Event: "created", Row: []byte(order)}, false, "gave no boolean"},
		{"a malformed row", `row.id == 1`, Input{Event: "created", Row: []byte(`{"id":`)}, false, "malformed row"},
		{"a malformed row not read", `event == "created"`, Input{Event: "created", Row: []byte(`{"id":`)}, true, ""},
		{"a malformed row before the column", `row.v == 1`, Input{Event: "created", Row: []byte(`{"id" 1, "v": 1}`)}, false, "expected ':'"},
		{"a malformed row after the column", `row.id == 1`, Input{Event: "created", Row: []byte(`{"id":1, "v": 1`)}, true, ""},
		{"a malformed row, sized", `size(row) == 2`, Input{Event: "created", Row: []byte(`{"id":1, "v": 1`)}, false, "unterminated object"},
		{"trailing data", `size(row) == 1`, Input{Event: "created", Row: []byte(`{"id":1} x`)}, false, "trailing data"},
		{"not an object", `row.id == 1`, Input{Event: "created", Row: []byte(`[1]`)}, false, "not a JSON object"},
		{"no row", `row.id == 1`, Input{Event: "created"}, false, "no row"},
		{"escaped quotes", `row.a == "x\\\"y" && row.b == 2`, Input{Event: "created", Row: []byte(`{"a":"x\\\"y","b":2}`)}, true, ""},
		{"maps compare", `row == old && row != {"id": 2}`, Input{Event: "updated", Row: []byte(`{"id":1,"t":[1,"a"]}`), Old: []byte(`{"t":[1,"a"],"id":1}`)}, true, ""},
		{"a malformed value read", `row.v == 1`, Input{Event: "created", Row: []byte(`{"v":1x}`)}, false, "malformed"},
		{"a malformed value not read", `row.id == 1`, Input{Event: "created", Row: []byte(`{"id":1,"v":[1,2x]}`)}, true, ""},
		{"a malformed old row", `old.id == 1`, Input{Event: "updated", Row: []byte(`{}`), Old: []byte(`{`)}, false, "malformed row"},
		{"keys", `row.all(k, k in ["id", "v"]) && "v" in row && !("w" in row)`, Input{Event: "created", Row: []byte(`{"id":1,"v":2}`)}, true, ""},
		{"an empty row", `size(row) == 0`, Input{Event: "created", Row: []byte(` { } `)}, true, ""},
		{"over the cost limit", `row.tags.all(a, row.tags.all(b, row.tags.all(c, row.tags.all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, [1,2,3,4,5,6,7,8,9,10].all(g, [1,2,3,4,5,6,7,8,9,10].all(h, true))))))))`,
			Input{Event: "created", Row: []byte(`{"tags":[1,2,3,4,5,6,7,8,9,10]}`)}, false, "cost limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.src)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.src, err)
			}
			in := tt.in
			got, err := p.Match(&in)
			switch {
			case tt.errMessage == "" && err != nil:
				t.Fatalf("Match = %v, %v; want %v", got, err, tt.want)
			case tt.errMessage != "" && (err == nil || !strings.Contains(err.Error(), tt.errMessage)):
				t.Fatalf("Match = %v, %v; want an error with %q", got, err, tt.errMessage)
			case got != tt.want:
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestInputShared checks that one Input serves several programs, as
// dispatch uses it for the webhooks an event matches.
func TestInputShared(t *testing.T) {
	a, err := Compile(`row.status == "completed"`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(`old.status == "processing" && event == "updated"`)
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Event: "updated", Row: []byte(order), Old: []byte(orderBefore)}
	for i := 0; i < 3; i++ {
		for _, p := range []*Program{a, b} {
			if ok, err := p.Match(in); !ok || err != nil {
				t.Fatalf("%s: Match = %v, %v; want true", p, ok, err)
			}
		}
	}
}

// benchOrder is an order row with nested jsonb, as the payload encodes it
// (about 1.5 KB).
const benchOrder = `{"id":727,"customer_id":26,"status":"completed","currency":"EUR","total":"29.35",` +
	`"billing":{"city":"San Francisco","email":"john.doe@example.com","phone":"(555) 555-5555","state":"CA","company":"","country":"US","postcode":"94103","shipping":{"city":"San Francisco","state":"CA","method":"flat_rate","country":"US","postcode":"94103","address_1":"969 Market","last_name":"Doe","first_name":"John"},"address_1":"969 Market","address_2":"","last_name":"Doe","first_name":"John"},` +
	`"line_items":[{"id":315,"sku":"WOO-HOODIE","name":"Woo Single #1","price":3,"total":"6.00","quantity":2,"subtotal":"6.00","tax_class":"","total_tax":"0.45","product_id":93,"variation_id":0},{"id":316,"sku":"WOO-TEE-L","name":"Ship Your Idea – Color: Black, Size: L","price":12,"total":"12.00","quantity":1,"subtotal":"12.00","tax_class":"","total_tax":"0.90","product_id":22,"variation_id":23},{"id":317,"sku":"WOO-CAP","name":"Cap","price":1.35,"total":"1.35","quantity":1,"subtotal":"1.35","tax_class":"","total_tax":"0.00","product_id":41,"variation_id":0}],` +
	`"date_created":"2026-11-23T10:53:34.123456Z","date_paid":"2026-11-23T10:55:01.5Z"}`

// BenchmarkMatch measures one filter on one event: scanning the row and
// the old row, decoding the columns read, and evaluating.
//
//	go test -run '^$' -bench Match -benchmem ./filter
func BenchmarkMatch(b *testing.B) {
	before := strings.Replace(benchOrder, `"status":"completed"`, `"status":"processing"`, 1)
	for _, bc := range []struct{ name, src string }{
		{"example", `row.status == "completed" && old.status != "completed"`},
		{"jsonb", `row.billing.country == "US"`},
		{"numeric", `double(row.total) > 10.0`},
		{"comprehension", `row.line_items.exists(i, i.sku == "WOO-CAP")`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := Compile(bc.src)
			if err != nil {
				b.Fatal(err)
			}
			row, old := []byte(benchOrder), []byte(before)
			b.SetBytes(int64(len(row) + len(old)))
			b.ReportAllocs()
			for b.Loop() {
				in := Input{Event: "updated", Row: row, Old: old}
				if ok, err := p.Match(&in); !ok || err != nil {
					b.Fatalf("Match = %v, %v", ok, err)
				}
			}
		})
	}
}

// TestDocumentedExamples evaluates the README's filters.
func TestDocumentedExamples(t *testing.T) {
	tests := []struct {
		src  string
		in   Input
		want bool
	}{
		{`event != "deleted"
  && row.stock == 0
  && (!has(old.stock) || old.stock > 0)`, Input{Event: "updated", Row: []byte(`{"id":1,"stock":0}`), Old: []byte(`{"id":1,"stock":3}`)}, true},
		{`event != "deleted" && row.stock == 0 && (!has(old.stock) || old.stock > 0)`, Input{Event: "created", Row: []byte(`{"id":1,"stock":0}`)}, true},
		{`event != "deleted" && row.stock == 0 && (!has(old.stock) || old.stock > 0)`, Input{Event: "updated", Row: []byte(`{"id":1,"stock":0}`), Old: []byte(`{"id":1,"stock":0}`)}, false},
		{`row.line_items.exists(i, i.sku == "CAP")`, Input{Event: "created", Row: []byte(`{"line_items":[{"sku":"MUG"},{"sku":"CAP"}]}`)}, true},
		{`timestamp(row.date_paid) > timestamp("2026-01-01T00:00:00Z")`, Input{Event: "created", Row: []byte(`{"date_paid":"2026-11-23T10:55:01.5Z"}`)}, true},
	}
	for _, tt := range tests {
		p, err := Compile(tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		in := tt.in
		if got, err := p.Match(&in); got != tt.want || err != nil {
			t.Errorf("%s on %s: %v, %v; want %v", tt.src, tt.in.Row, got, err, tt.want)
		}
	}
}
