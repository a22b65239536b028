package topics

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walhook/walhook/cdc"
)

// orderRelation is an order table shaped like WooCommerce's orders.
var orderRelation = &cdc.Relation{ID: 16400, Schema: "public", Table: "orders", ReplicaIdentity: 'd',
	Columns: []cdc.Column{
		{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
		{Name: "status", TypeOID: pgtype.TextOID},
		{Name: "currency", TypeOID: pgtype.BPCharOID},
		{Name: "customer_id", TypeOID: pgtype.Int8OID},
		{Name: "discount_total", TypeOID: pgtype.NumericOID},
		{Name: "shipping_total", TypeOID: pgtype.NumericOID},
		{Name: "total", TypeOID: pgtype.NumericOID},
		{Name: "total_tax", TypeOID: pgtype.NumericOID},
		{Name: "prices_include_tax", TypeOID: pgtype.BoolOID},
		{Name: "date_created", TypeOID: pgtype.TimestamptzOID},
		{Name: "date_modified", TypeOID: pgtype.TimestamptzOID},
		{Name: "billing", TypeOID: pgtype.JSONBOID},
		{Name: "shipping", TypeOID: pgtype.JSONBOID},
		{Name: "line_items", TypeOID: pgtype.JSONBOID},
		{Name: "tags", TypeOID: pgtype.TextArrayOID},
		{Name: "customer_note", TypeOID: pgtype.TextOID},
	}}

// orderRow is one row of orderRelation as the server sends it.
var orderRow = []cdc.Value{
	text("727"),
	text("processing"),
	text("USD"),
	text("26"),
	text("0.00"),
	text("10.00"),
	text("29.35"),
	text("1.35"),
	text("f"),
	text("2026-11-23 10:53:34.123456+00"),
	text("2026-11-23 10:55:01.5+00"),
	text(`{"city": "San Francisco", "email": "john.doe@example.com", "phone": "(555) 555-5555", "state": "CA", "company": "", "country": "US", "postcode": "94103", "address_1": "969 Market", "address_2": "", "last_name": "Doe", "first_name": "John"}`),
	text(`{"city": "San Francisco", "state": "CA", "company": "", "country": "US", "postcode": "94103", "address_1": "969 Market", "address_2": "", "last_name": "Doe", "first_name": "John"}`),
	text(`[{"id": 315, "sku": "WOO-HOODIE", "name": "Woo Single #1", "price": 3, "total": "6.00", "quantity": 2, "subtotal": "6.00", "tax_class": "", "total_tax": "0.45", "product_id": 93, "variation_id": 0}, {"id": 316, "sku": "WOO-TEE-L", "name": "Ship Your Idea – Color: Black, Size: L", "price": 12, "total": "12.00", "quantity": 1, "subtotal": "12.00", "tax_class": "", "total_tax": "0.90", "product_id": 22, "variation_id": 23}, {"id": 317, "sku": "WOO-CAP", "name": "Cap", "price": 1.35, "total": "1.35", "quantity": 1, "subtotal": "1.35", "tax_class": "", "total_tax": "0.00", "product_id": 41, "variation_id": 0}]`),
	text(`{vip,wholesale,"gift wrap"}`),
	text("Please leave the parcel at the door.\nThanks!"),
}

func BenchmarkMapOrder(b *testing.B) {
	m := NewMapper([]Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
	ch := &cdc.Change{Op: cdc.OpUpdate, Rel: orderRelation, New: orderRow}
	ev, ok, err := m.Map(ch)
	if err != nil || !ok {
		b.Fatalf("Map: ok %v err %v", ok, err)
	}
	checkJSON(b, ev.Body)
	b.SetBytes(int64(len(ev.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Map(ch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMapDelete(b *testing.B) {
	m := NewMapper([]Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
	old := make([]cdc.Value, len(orderRow))
	old[0] = orderRow[0]
	ch := &cdc.Change{Op: cdc.OpDelete, Rel: orderRelation, Old: old}
	ev, ok, err := m.Map(ch)
	if err != nil || !ok || string(ev.Body) != `{"id":727}` {
		b.Fatalf("Map = %s, ok %v err %v", ev.Body, ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Map(ch); err != nil {
			b.Fatal(err)
		}
	}
}
