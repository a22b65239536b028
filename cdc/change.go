package cdc

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// Op is the kind of a Change.
type Op uint8

// The kinds of change a transaction can carry.
const (
	OpInsert  Op = iota + 1 // a row was inserted; New holds it
	OpUpdate                // a row was updated; New holds the new row, Old the old one when the server sent it
	OpDelete                // a row was deleted; Old holds its key columns (or the whole row under REPLICA IDENTITY FULL)
	OpMessage               // a transactional logical message (pg_logical_emit_message(true, …)); Prefix and Content hold it
)

// String returns the lower-case name of the operation.
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpMessage:
		return "message"
	}
	return "unknown"
}

// Column describes one column of a Relation.
type Column struct {
	Name    string
	TypeOID uint32
	// Key reports whether the column is part of the table's replica
	// identity (its primary key, the identity index, or every column
	// under REPLICA IDENTITY FULL).
	Key bool
}

// Relation is a table as the server last described it. A new Relation
// replaces the old one after ALTER TABLE; a Change keeps a pointer to the
// Relation that was current when it was decoded, so it stays consistent.
type Relation struct {
	ID     uint32
	Schema string
	Table  string
	// ReplicaIdentity is the table's replica identity setting:
	// 'd' default (primary key), 'f' full, 'i' index, 'n' nothing.
	ReplicaIdentity byte
	Columns         []Column
}

// QualifiedName returns "schema.table".
func (r *Relation) QualifiedName() string { return r.Schema + "." + r.Table }

// Kind says what a Value holds.
type Kind uint8

// The kinds of Value.
const (
	KindNull      Kind = iota // SQL NULL
	KindText                  // Data holds the value in PostgreSQL's text format
	KindUnchanged             // an unchanged TOASTed value the server did not send
)

// Value is one column's value in PostgreSQL's text output format, as
// pgoutput sends it. Data is owned by the Change and never reused.
type Value struct {
	Kind Kind
	Data []byte
}

// Change is one row change, or one logical message, inside a committed
// transaction.
type Change struct {
	Op Op
	// Rel is the relation the row belongs to; nil for OpMessage.
	Rel *Relation
	// New is the row after an insert or update, one Value per column of Rel.
	// Unchanged TOASTed columns of an update are filled from Old when the
	// server sent the old row (REPLICA IDENTITY FULL); otherwise they keep
	// KindUnchanged.
	New []Value
	// Old is the row before an update or delete: the key columns, or the
	// whole row under REPLICA IDENTITY FULL. Nil when the server sent none.
	Old []Value
	// Prefix and Content are the logical message's prefix and payload (OpMessage).
	Prefix  string
	Content []byte
	// Index is the change's position in its transaction, counted from 0
	// over every change and message of the transaction.
	Index uint32
}

// Batch is a run of consecutive changes from one committed transaction.
// A transaction arrives as one or more batches in order; the last has
// Last set and carries EndLSN. Changes are only ever handed out for
// committed transactions (pgoutput sends a transaction after its commit).
type Batch struct {
	Xid uint32
	// CommitLSN is the LSN of the transaction's commit record. It identifies
	// the transaction and orders transactions.
	CommitLSN pglogrepl.LSN
	// EndLSN is the LSN just past the commit record: the position to
	// confirm to the server once the whole transaction is settled. It is
	// set only on the last batch.
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
	Changes    []Change
	// Last reports that this batch ends the transaction.
	Last bool
}
