package config

import (
	"strings"
	"testing"
	"time"
)

// TestPayloadQuery: a resource's payload_query is kept as written (after
// ${VAR} expansion) and delivery.payload_query_timeout defaults to 5s.
func TestPayloadQuery(t *testing.T) {
	const query = "SELECT o.id, jsonb_build_object('id', o.id, 'site', '${SITE:-https://shop.example.com/}')\n  FROM orders o WHERE o.id = ANY($1)\n"
	for _, tc := range []struct {
		name, delivery string
		timeout        time.Duration
	}{
		{"default timeout", "", 5 * time.Second},
		{"timeout set", "delivery:\n  payload_query_timeout: 750ms\n", 750 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "postgres: { url: postgres://walhook@localhost/shop }\nsource: https://shop.example.com\n" + tc.delivery +
				"resources:\n  order:\n    table: orders\n    payload_query: |\n" + indent(query, "      ") +
				"  product: { table: products }\n"
			c, err := Parse("test.yaml", []byte(yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			order, _ := c.Resource("order")
			want := strings.ReplaceAll(query, "${SITE:-https://shop.example.com/}", "https://shop.example.com/")
			if order.PayloadQuery != want {
				t.Errorf("order payload_query = %q, want %q", order.PayloadQuery, want)
			}
			if product, _ := c.Resource("product"); product.PayloadQuery != "" {
				t.Errorf("product payload_query = %q, want none", product.PayloadQuery)
			}
			if c.Delivery.PayloadQueryTimeout != tc.timeout {
				t.Errorf("payload_query_timeout = %s, want %s", c.Delivery.PayloadQueryTimeout, tc.timeout)
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}
