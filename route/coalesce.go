package route

import (
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/topics"
)

// Coalesce keeps, for each row and topic, at most one event of a
// transaction, with the row's last state (SPEC §5):
//
//   - created and updated events carry the row's last image in the
//     transaction (from its last insert or update);
//   - an updated event's old row (for filters) is the one before the
//     transaction's first update of the row, so "status became completed"
//     holds even when the row was touched again after;
//   - each kept event stands at the position of the last change of its
//     kind, so insert → update → delete gives created, updated, deleted
//     in that order, and delete → insert gives deleted, created;
//   - actions are never coalesced.
//
// events is one whole transaction in commit order; the result reuses its
// backing array.
func Coalesce(events []*dispatch.Event) []*dispatch.Event {
	type row struct {
		created, updated, deleted int // index in events of the kept event, -1 for none
		image                     []byte
		old                       []byte // the old row of the first update
		n                         int
	}
	rows := make(map[string]*row, len(events))
	multi := false
	for i, e := range events {
		if e.Topic.IsAction() {
			continue
		}
		r := rows[e.RowKey]
		if r == nil {
			r = &row{created: -1, updated: -1, deleted: -1}
			rows[e.RowKey] = r
		}
		r.n++
		multi = multi || r.n > 1
		switch e.Topic.Event {
		case topics.EventCreated:
			r.created, r.image = i, e.Body
		case topics.EventUpdated:
			if r.updated < 0 {
				r.old = e.Old
			}
			r.updated, r.image = i, e.Body
		case topics.EventDeleted:
			r.deleted = i
		}
	}
	if !multi {
		return events
	}
	out := events[:0]
	for i, e := range events {
		if e.Topic.IsAction() {
			out = append(out, e)
			continue
		}
		r := rows[e.RowKey]
		if r.n == 1 {
			out = append(out, e)
			continue
		}
		switch i {
		case r.created, r.updated:
			old := e.Old
			if i == r.updated {
				old = r.old
			}
			if string(e.Body) != string(r.image) || string(e.Old) != string(old) {
				c := *e
				c.Body, c.Old = r.image, old
				e = &c
			}
			out = append(out, e)
		case r.deleted:
			out = append(out, e)
		}
	}
	return out
}
