package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// benchOrderRelation is the shop's orders table as pgoutput describes it.
var benchOrderRelation = &cdc.Relation{ID: 16400, Schema: "public", Table: "orders", ReplicaIdentity: 'f',
	Columns: []cdc.Column{
		{Name: "id", TypeOID: pgtype.Int8OID, Key: true},
		{Name: "customer_id", TypeOID: pgtype.Int8OID, Key: true},
		{Name: "status", TypeOID: pgtype.TextOID, Key: true},
		{Name: "currency", TypeOID: pgtype.BPCharOID, Key: true},
		{Name: "total", TypeOID: pgtype.NumericOID, Key: true},
		{Name: "billing", TypeOID: pgtype.JSONBOID, Key: true},
		{Name: "line_items", TypeOID: pgtype.JSONBOID, Key: true},
		{Name: "date_created", TypeOID: pgtype.TimestamptzOID, Key: true},
		{Name: "date_paid", TypeOID: pgtype.TimestamptzOID, Key: true},
	}}

func benchText(s string) cdc.Value { return cdc.Value{Kind: cdc.KindText, Data: []byte(s)} }

// benchOrderRow is one order with a billing/shipping object and three line items.
var benchOrderRow = []cdc.Value{
	benchText("727"),
	benchText("26"),
	benchText("processing"),
	benchText("EUR"),
	benchText("29.35"),
	benchText(`{"city": "San Francisco", "email": "john.doe@example.com", "phone": "(555) 555-5555", "state": "CA", "company": "", "country": "US", "postcode": "94103", "shipping": {"city": "San Francisco", "state": "CA", "method": "flat_rate", "country": "US", "postcode": "94103", "address_1": "969 Market", "last_name": "Doe", "first_name": "John"}, "address_1": "969 Market", "address_2": "", "last_name": "Doe", "first_name": "John"}`),
	benchText(`[{"id": 315, "sku": "WOO-HOODIE", "name": "Woo Single #1", "price": 3, "total": "6.00", "quantity": 2, "subtotal": "6.00", "tax_class": "", "total_tax": "0.45", "product_id": 93, "variation_id": 0}, {"id": 316, "sku": "WOO-TEE-L", "name": "Ship Your Idea – Color: Black, Size: L", "price": 12, "total": "12.00", "quantity": 1, "subtotal": "12.00", "tax_class": "", "total_tax": "0.90", "product_id": 22, "variation_id": 23}, {"id": 317, "sku": "WOO-CAP", "name": "Cap", "price": 1.35, "total": "1.35", "quantity": 1, "subtotal": "1.35", "tax_class": "", "total_tax": "0.00", "product_id": 41, "variation_id": 0}]`),
	benchText("2026-11-23 10:53:34.123456+00"),
	benchText("2026-11-23 10:55:01.5+00"),
}

// benchHeader builds a delivery's headers the way hook.attempt does for a
// woocommerce-signed webhook.
func benchHeader(dst []header, def *hookDef, source, ua, sig, id string) []header {
	return append(dst[:0],
		header{"Content-Type", "application/json"},
		header{"User-Agent", ua},
		header{headerSource, source},
		header{headerResource, def.Topic.Resource},
		header{headerEvent, def.Topic.Event},
		header{headerTopic, def.topic},
		header{headerSignature, sig},
		header{headerID, def.idText},
		header{headerDelivery, id},
		header{headerDeliveryWC, id},
	)
}

// BenchmarkHotPath measures the per-event work between a decoded change and
// the HTTP request: mapping an order update to its topic and JSON body, the
// delivery id, the WooCommerce signature and the header map.
//
//	go test -run '^$' -bench HotPath -benchmem ./dispatch
func BenchmarkHotPath(b *testing.B) {
	const secret = "bench-secret-0123456789"
	m := topics.NewMapper([]topics.Resource{{Name: "order", Table: "orders", KeyColumns: []string{"id"}}})
	ch := &cdc.Change{Op: cdc.OpUpdate, Rel: benchOrderRelation, New: benchOrderRow, Old: benchOrderRow, Index: 3}
	def := newHookDef(Definition{ID: 7, Name: "Order updated", Topic: topics.Topic{Resource: "order", Event: "updated"},
		DeliveryURL: "http://127.0.0.1:8080/hook", Secret: secret, Signature: webhook.SignatureWooCommerce}, discardLogger())
	source, ua := "https://shop.example.com/", userAgent("1.0.0", "17.2")
	var scratch []header

	// Check once that the pieces fit: the body maps, the signature verifies.
	ev, ok, err := m.Map(ch)
	if err != nil || !ok || ev.Topic.String() != "order.updated" {
		b.Fatalf("Map = %v, ok %v, err %v", ev.Topic, ok, err)
	}
	sg := newSigner(secret)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(ev.Body)
	if got, want := sg.WooCommerce(ev.Body), base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		b.Fatalf("signature %q, want %q", got, want)
	}
	if got := benchHeader(nil, def, source, ua, "sig", "id")[5]; got != (header{headerTopic, "order.updated"}) {
		b.Fatalf("topic header %q", got)
	}

	steps := []struct {
		name string
		run  func(i int) error
	}{
		{"map", func(int) error { _, _, err := m.Map(ch); return err }},
		{"sign", func(int) error { _ = sg.WooCommerce(ev.Body); return nil }},
		{"delivery-id", func(i int) error { _ = DeliveryID(def.ID, 0x16B3C28, uint32(i)); return nil }},
		{"header", func(int) error { scratch = benchHeader(scratch, def, source, ua, "sig", "id"); return nil }},
		{"all", func(i int) error {
			ev, _, err := m.Map(ch)
			if err != nil {
				return err
			}
			id := DeliveryID(def.ID, 0x16B3C28, uint32(i))
			scratch = benchHeader(scratch, def, source, ua, sg.WooCommerce(ev.Body), id)
			return nil
		}},
	}
	for _, s := range steps {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(ev.Body)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := s.run(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
