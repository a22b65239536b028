package dispatch

import (
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// Batch is part of one committed transaction's events, in commit order, as
// the routing stage hands them over. A transaction arrives as one or more
// batches with the same Commit, in order; its last batch has Last set and
// End, the position confirmed once all of its deliveries are settled.
// Transactions arrive in commit order, each once.
type Batch struct {
	Commit     state.LSN // the transaction's commit position
	CommitTime time.Time
	End        state.LSN // the transaction's end position; set on the last batch
	Last       bool
	Events     []*Event
}

// Event is one event of a transaction. It is shared, read-only, by every
// webhook it matches.
type Event struct {
	topics.Event
	// RowKey is the unit of ordering: a row's events reach a webhook in
	// commit order, and later events of a row wait behind a parked one.
	RowKey string
	// Commit is the transaction's commit position; with Index it makes
	// the delivery id.
	Commit state.LSN
	// Document, when set, is the body built for the event by its
	// resource's payload_query: it is what is sent, signed and parked,
	// while filters keep reading the row image in Body.
	Document []byte
}

// Payload returns the bytes sent for e: its Document, or else its Body.
func (e *Event) Payload() []byte {
	if e.Document != nil {
		return e.Document
	}
	return e.Body
}

// RowKey returns the ordering key of a resource's row.
func RowKey(resource, key string) string { return resource + "/" + key }
