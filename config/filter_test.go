package config

import (
	"strings"
	"testing"

	"github.com/walhook/walhook/topics"
)

// TestWildcardAndFilter loads webhooks with <resource>.* topics and CEL
// filters, written in each YAML style.
func TestWildcardAndFilter(t *testing.T) {
	src := `
postgres: { url: postgres://walhook@localhost/shop }
source: https://shop.example.com
default_secret: s3cret
resources:
  order: { table: public.orders }
  refund: { table: shop.refunds }
webhooks:
  - { id: 1, topic: order.*, delivery_url: https://h.example.com/1 }
  - id: 2
    topic: refund.*
    filter: 'row.amount > 100 && event != "deleted"'
    delivery_url: https://h.example.com/2
  - id: 3
    topic: order.updated
    filter: |
      row.status == "completed"
        && old.status != "completed"
    delivery_url: https://h.example.com/3
  - id: 4
    topic: action.*
    filter: row.arg.points >= 10
    delivery_url: https://h.example.com/4
`
	c, err := Parse("test.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		topic    topics.Topic
		wildcard bool
		filter   string
	}{
		{topics.Topic{Resource: "order", Event: "*"}, true, ""},
		{topics.Topic{Resource: "refund", Event: "*"}, true, `row.amount > 100 && event != "deleted"`},
		{topics.Topic{Resource: "order", Event: "updated"}, false, "row.status == \"completed\"\n  && old.status != \"completed\"\n"},
		{topics.Topic{Resource: "action", Event: "*"}, false, "row.arg.points >= 10"},
	}
	for i, w := range want {
		got := c.Webhooks[i]
		if got.Topic != w.topic || got.Topic.IsWildcard() != w.wildcard || got.Filter != w.filter {
			t.Errorf("webhook %d: topic %v (wildcard %v), filter %q; want %v (%v), %q",
				got.ID, got.Topic, got.Topic.IsWildcard(), got.Filter, w.topic, w.wildcard, w.filter)
		}
	}
}

// TestFilterProblemLines checks where a filter's compile error is reported:
// on its own line inside a literal block, else on the key's line.
func TestFilterProblemLines(t *testing.T) {
	head := "postgres: { url: postgres://walhook@localhost/shop }\nsource: https://shop.example.com\ndefault_secret: s\nwebhooks:\n  - id: 1\n    topic: order.updated\n    delivery_url: https://h.example.com/1\n"
	tests := []struct {
		name, filter string
		want         string
	}{
		{"plain", "    filter: row.status == \"a\" && rows.x\n", `test.yaml:8: webhooks[0].filter: invalid filter at column 22: undeclared reference to 'rows'`},
		{"literal, third line", "    filter: |\n      row.status == \"a\"\n      && row.total > 1\n      && olds.x == 1\n", `test.yaml:11: webhooks[0].filter: invalid filter at column 4: undeclared reference to 'olds'`},
		{"literal, kept", "    filter: |+\n      row.status ==\n\n", `test.yaml:9: webhooks[0].filter: invalid filter at column 14: Syntax error: the expression ends too early`},
		{"double-quoted over two lines", "    filter: \"row.status == 1 &&\n      rows.x\"\n", `test.yaml:8: webhooks[0].filter: invalid filter at column 20: undeclared reference to 'rows'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(head+tt.filter), nil)
			if err == nil || strings.TrimSpace(err.Error()) != tt.want {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}
