package topics

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     Topic
		wildcard bool
		err      string // a part of the error; "" for none
	}{
		{in: "order.created", want: Topic{"order", "created"}},
		{in: "order.updated", want: Topic{"order", "updated"}},
		{in: "order.deleted", want: Topic{"order", "deleted"}},
		{in: "order.*", want: Topic{"order", "*"}, wildcard: true},
		{in: "line_item2.*", want: Topic{"line_item2", "*"}, wildcard: true},
		{in: "action.woocommerce_order_refunded", want: Topic{"action", "woocommerce_order_refunded"}},
		{in: "action.*", want: Topic{"action", "*"}}, // the action named "*", not a wildcard
		{in: "order", err: "must be <resource>.<event>, <resource>.* or action.<name>"},
		{in: "order.", err: "must be <resource>.<event>"},
		{in: ".created", err: "must be <resource>.<event>"},
		{in: "order.removed", err: `event "removed" must be created, updated, deleted or * (all three)`},
		{in: "order.**", err: `event "**" must be`},
		{in: "order.created.*", err: `event "created.*" must be`},
		{in: "*.created", err: `resource "*" must be lower-case`},
		{in: "*.*", err: `resource "*" must be lower-case`},
		{in: "Order.*", err: `resource "Order" must be lower-case`},
		{in: "order .*", err: "must not contain white space"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
			if got.IsWildcard() != tt.wildcard {
				t.Errorf("IsWildcard() = %v, want %v", got.IsWildcard(), tt.wildcard)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	order := func(e string) Topic { return Topic{"order", e} }
	tests := []struct {
		webhook, event Topic
		want           bool
	}{
		{order("*"), order("created"), true},
		{order("*"), order("updated"), true},
		{order("*"), order("deleted"), true},
		{order("*"), order("*"), false}, // events never have it
		{order("*"), Topic{"product", "created"}, false},
		{order("*"), Topic{"action", "order"}, false},
		{order("updated"), order("updated"), true},
		{order("updated"), order("created"), false},
		{Topic{"action", "*"}, Topic{"action", "refund"}, false},
		{Topic{"action", "*"}, Topic{"action", "*"}, true},
		{Topic{"action", "refund"}, Topic{"action", "refund"}, true},
	}
	for _, tt := range tests {
		if got := tt.webhook.Matches(tt.event); got != tt.want {
			t.Errorf("%s.Matches(%s) = %v, want %v", tt.webhook, tt.event, got, tt.want)
		}
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		topic Topic
		want  []Topic
	}{
		{Topic{"order", "*"}, []Topic{{"order", "created"}, {"order", "updated"}, {"order", "deleted"}}},
		{Topic{"order", "updated"}, []Topic{{"order", "updated"}}},
		{Topic{"action", "*"}, []Topic{{"action", "*"}}},
	}
	for _, tt := range tests {
		got := tt.topic.Events()
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s.Events() = %v, want %v", tt.topic, got, tt.want)
		}
		for _, e := range got {
			if !tt.topic.Matches(e) {
				t.Errorf("%s.Matches(%s) = false for one of its Events", tt.topic, e)
			}
		}
	}
}

func TestValidateWildcard(t *testing.T) {
	configured := func(name string) bool { return name == "order" }
	if err := (Topic{"order", "*"}).Validate(configured); err != nil {
		t.Errorf("order.*: %v", err)
	}
	err := (Topic{"refund", "*"}).Validate(configured)
	if err == nil || !strings.Contains(err.Error(), `topic "refund.*" names resource "refund", which is not configured`) {
		t.Errorf("refund.*: %v, want not configured", err)
	}
}
