package route

import (
	"fmt"
	"strings"
	"testing"

	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/topics"
)

func ev(topic, key string, index uint32, body string) *dispatch.Event {
	tp, err := topics.Parse(topic)
	if err != nil {
		panic(err)
	}
	return &dispatch.Event{Event: topics.Event{Topic: tp, Key: key, Index: index, Body: []byte(body)}, RowKey: dispatch.RowKey(tp.Resource, key)}
}

// TestCoalesce covers every sequence of insert (I), update (U) and delete
// (D) of one row within a transaction, up to three changes, and the cases
// where rows and resources must stay apart.
func TestCoalesce(t *testing.T) {
	tests := []struct {
		name string
		in   []*dispatch.Event
		want string // topic:body:index, in order
	}{
		{"I", []*dispatch.Event{ev("order.created", "1", 0, `1`)}, "created:1:0"},
		{"U", []*dispatch.Event{ev("order.updated", "1", 0, `1`)}, "updated:1:0"},
		{"D", []*dispatch.Event{ev("order.deleted", "1", 0, `k`)}, "deleted:k:0"},
		{"IU", []*dispatch.Event{ev("order.created", "1", 0, `1`), ev("order.updated", "1", 1, `2`)}, "created:2:0 updated:2:1"},
		{"IUU", []*dispatch.Event{ev("order.created", "1", 0, `1`), ev("order.updated", "1", 1, `2`), ev("order.updated", "1", 2, `3`)},
			"created:3:0 updated:3:2"},
		{"ID", []*dispatch.Event{ev("order.created", "1", 0, `1`), ev("order.deleted", "1", 1, `k`)}, "created:1:0 deleted:k:1"},
		{"IUD", []*dispatch.Event{ev("order.created", "1", 0, `1`), ev("order.updated", "1", 1, `2`), ev("order.deleted", "1", 2, `k`)},
			"created:2:0 updated:2:1 deleted:k:2"},
		{"UU", []*dispatch.Event{ev("order.updated", "1", 0, `1`), ev("order.updated", "1", 1, `2`)}, "updated:2:1"},
		{"UD", []*dispatch.Event{ev("order.updated", "1", 0, `1`), ev("order.deleted", "1", 1, `k`)}, "updated:1:0 deleted:k:1"},
		{"UUD", []*dispatch.Event{ev("order.updated", "1", 0, `1`), ev("order.updated", "1", 1, `2`), ev("order.deleted", "1", 2, `k`)},
			"updated:2:1 deleted:k:2"},
		{"DI", []*dispatch.Event{ev("order.deleted", "1", 0, `k`), ev("order.created", "1", 1, `1`)}, "deleted:k:0 created:1:1"},
		{"DIU", []*dispatch.Event{ev("order.deleted", "1", 0, `k`), ev("order.created", "1", 1, `1`), ev("order.updated", "1", 2, `2`)},
			"deleted:k:0 created:2:1 updated:2:2"},
		{"UDI", []*dispatch.Event{ev("order.updated", "1", 0, `1`), ev("order.deleted", "1", 1, `k`), ev("order.created", "1", 2, `2`)},
			"updated:2:0 deleted:k:1 created:2:2"},
		{"IDI", []*dispatch.Event{ev("order.created", "1", 0, `1`), ev("order.deleted", "1", 1, `k`), ev("order.created", "1", 2, `2`)},
			"deleted:k:1 created:2:2"},
		{"DID", []*dispatch.Event{ev("order.deleted", "1", 0, `k`), ev("order.created", "1", 1, `1`), ev("order.deleted", "1", 2, `k2`)},
			"created:1:1 deleted:k2:2"},
		{"two rows stay apart", []*dispatch.Event{ev("order.created", "1", 0, `a1`), ev("order.created", "2", 1, `b1`), ev("order.updated", "1", 2, `a2`)},
			"created:a2:0 created:b1:1 updated:a2:2"},
		{"same key, other resource", []*dispatch.Event{ev("order.updated", "1", 0, `o`), ev("product.updated", "1", 1, `p`)},
			"updated:o:0 updated:p:1"},
		{"actions are never folded", []*dispatch.Event{ev("action.a", "", 0, `x1`), ev("action.a", "", 1, `x2`)},
			"a:x1:0 a:x2:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range Coalesce(tt.in) {
				got = append(got, fmt.Sprintf("%s:%s:%d", e.Topic.Event, e.Body, e.Index))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
		})
	}
}
