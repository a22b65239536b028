package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
)

// assembler turns the pgoutput messages of one replication session into
// batches. It is not safe for concurrent use.
type assembler struct {
	batchSize int
	logger    *slog.Logger
	// relations is the relation cache: the latest Relation for each
	// relation id. A Relation message replaces the entry with a new
	// *Relation, so changes decoded earlier keep the one they were
	// decoded with.
	relations map[uint32]*Relation
	// relationIDs is the last relation id seen for each table name, kept
	// across sessions: a new id for a known name means the table was
	// dropped and created again.
	relationIDs map[string]uint32

	inTx       bool
	xid        uint32
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	index      uint32 // index of the next change in the transaction
	cur        *Batch // the batch being filled, nil before the first change
}

// step is what one message yields.
type step struct {
	// batch is a batch ready to hand out, or nil.
	batch *Batch
	// changes counts the changes the message added.
	changes int
	// skippedEnd is the end LSN of a committed transaction that carried no
	// change of the publication, so nothing was handed out for it; zero
	// otherwise.
	skippedEnd pglogrepl.LSN
}

func newAssembler(batchSize int, logger *slog.Logger) *assembler {
	return &assembler{batchSize: batchSize, logger: logger, relations: make(map[uint32]*Relation), relationIDs: make(map[string]uint32)}
}

// reset forgets the relation cache and any unfinished transaction, for a
// new session: the server sends Relation messages again and resends
// every unconfirmed transaction from its start.
func (a *assembler) reset() {
	clear(a.relations)
	a.inTx = false
	a.cur = nil
}

// feed decodes one pgoutput message (the WAL data of an XLogData message).
// It never keeps walData: row changes are decoded from one copy of it (see
// decodeRowChange), and logical message contents are copied here.
func (a *assembler) feed(walData []byte) (step, error) {
	if len(walData) == 0 {
		return step{}, errors.New("empty pgoutput message")
	}
	switch walData[0] {
	case 'I', 'U', 'D':
		return a.rowChange(walData)
	}
	msg, err := pglogrepl.ParseV2(walData, false)
	if err != nil {
		return step{}, fmt.Errorf("parse pgoutput message %q: %w", walData[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if a.inTx {
			return step{}, fmt.Errorf("BEGIN of transaction %d inside transaction %d", m.Xid, a.xid)
		}
		a.inTx = true
		a.xid, a.commitLSN, a.commitTime = m.Xid, m.FinalLSN, m.CommitTime
		a.index = 0
		a.cur = nil
		return step{}, nil

	case *pglogrepl.CommitMessage:
		if !a.inTx {
			return step{}, fmt.Errorf("COMMIT at %s outside a transaction", m.CommitLSN)
		}
		a.inTx = false
		b := a.cur
		a.cur = nil
		if b == nil {
			return step{skippedEnd: m.TransactionEndLSN}, nil
		}
		b.Last = true
		b.EndLSN = m.TransactionEndLSN
		return step{batch: b}, nil

	case *pglogrepl.RelationMessageV2:
		rel := &Relation{
			ID:              m.RelationID,
			Schema:          m.Namespace,
			Table:           m.RelationName,
			ReplicaIdentity: m.ReplicaIdentity,
			Columns:         make([]Column, len(m.Columns)),
		}
		for i, c := range m.Columns {
			rel.Columns[i] = Column{Name: c.Name, TypeOID: c.DataType, Key: c.Flags&1 != 0}
		}
		a.relations[m.RelationID] = rel
		if prev, ok := a.relationIDs[rel.QualifiedName()]; ok && prev != rel.ID {
			a.logger.Warn("a replicated table was dropped and created again; changes made to it before it was back in the publication were not captured and cannot be recovered",
				"table", rel.QualifiedName(), "relation_id", rel.ID, "previous_relation_id", prev)
		}
		a.relationIDs[rel.QualifiedName()] = rel.ID
		return step{}, nil

	case *pglogrepl.LogicalDecodingMessageV2:
		if !m.Transactional {
			// Sent at once, whether or not its transaction commits.
			return step{}, nil
		}
		// Content points into the connection's read buffer.
		content := make([]byte, len(m.Content))
		copy(content, m.Content)
		return a.add(Change{Op: OpMessage, Prefix: m.Prefix, Content: content})

	case *pglogrepl.TruncateMessageV2:
		names := make([]string, 0, len(m.RelationIDs))
		for _, id := range m.RelationIDs {
			if rel, ok := a.relations[id]; ok {
				names = append(names, rel.QualifiedName())
			}
		}
		a.logger.Warn("TRUNCATE is not replicated; ignoring it", "tables", names, "xid", a.xid)
		return step{}, nil

	case *pglogrepl.TypeMessageV2, *pglogrepl.OriginMessage:
		return step{}, nil

	case *pglogrepl.StreamStartMessageV2, *pglogrepl.StreamStopMessageV2,
		*pglogrepl.StreamCommitMessageV2, *pglogrepl.StreamAbortMessageV2:
		return step{}, fmt.Errorf("unexpected %s message: streaming of in-progress transactions was not requested", msg.Type())
	}
	return step{}, fmt.Errorf("unexpected pgoutput message %s", msg.Type())
}

// rowChange decodes an Insert, Update or Delete message. It reads the
// message itself rather than through pglogrepl, which allocates a copy of
// every column value: here the message is copied once and the values of
// both tuples are slices of that copy.
func (a *assembler) rowChange(walData []byte) (step, error) {
	kind := walData[0]
	var name string
	switch kind {
	case 'I':
		name = "Insert"
	case 'U':
		name = "Update"
	default:
		name = "Delete"
	}
	if len(walData) < 6 {
		return step{}, fmt.Errorf("parse pgoutput message %q: %s message too short (%d bytes)", kind, name, len(walData))
	}
	relID := binary.BigEndian.Uint32(walData[1:5])
	rel, err := a.relation(relID)
	if err != nil {
		return step{}, err
	}
	data := make([]byte, len(walData)-5)
	copy(data, walData[5:])
	d := tupleReader{buf: data}
	switch kind {
	case 'I':
		if d.byte() != 'N' {
			return step{}, fmt.Errorf("parse pgoutput message %q: insert into %s: expected a new tuple", kind, rel.QualifiedName())
		}
		newRow, err := d.lastTuple(rel)
		if err != nil {
			return step{}, fmt.Errorf("insert into %s: %w", rel.QualifiedName(), err)
		}
		return a.add(Change{Op: OpInsert, Rel: rel, New: newRow})

	case 'U':
		var oldRow []Value
		t := d.byte()
		if t == 'K' || t == 'O' {
			if oldRow, err = d.tuple(rel); err != nil {
				return step{}, fmt.Errorf("update of %s: old row: %w", rel.QualifiedName(), err)
			}
			t = d.byte()
		}
		if t != 'N' {
			return step{}, fmt.Errorf("parse pgoutput message %q: update of %s: expected a new tuple", kind, rel.QualifiedName())
		}
		newRow, err := d.lastTuple(rel)
		if err != nil {
			return step{}, fmt.Errorf("update of %s: new row: %w", rel.QualifiedName(), err)
		}
		fillUnchanged(newRow, oldRow)
		return a.add(Change{Op: OpUpdate, Rel: rel, New: newRow, Old: oldRow})

	default:
		if t := d.byte(); t != 'K' && t != 'O' {
			return step{}, fmt.Errorf("parse pgoutput message %q: delete from %s: expected a key or old tuple", kind, rel.QualifiedName())
		}
		oldRow, err := d.lastTuple(rel)
		if err != nil {
			return step{}, fmt.Errorf("delete from %s: %w", rel.QualifiedName(), err)
		}
		return a.add(Change{Op: OpDelete, Rel: rel, Old: oldRow})
	}
}

// tupleReader reads pgoutput TupleData from buf; a read past the end sets
// short, and byte returns 0.
type tupleReader struct {
	buf   []byte
	short bool
}

func (d *tupleReader) byte() byte {
	if len(d.buf) < 1 {
		d.short = true
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *tupleReader) take(n int) []byte {
	if n < 0 || len(d.buf) < n {
		d.short = true
		d.buf = nil
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// lastTuple reads the message's last tuple: one that bytes follow is an
// error.
func (d *tupleReader) lastTuple(rel *Relation) ([]Value, error) {
	vals, err := d.tuple(rel)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return vals, nil
}

// end reports bytes left after the last tuple, or a message cut short.
func (d *tupleReader) end() error {
	if d.short {
		return errors.New("message cut short")
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%d bytes after the last tuple", len(d.buf))
	}
	return nil
}

// tuple reads one TupleData of rel: the number of columns, then each
// column's kind and, for a text value, its length and bytes. Text values
// are slices of the reader's buffer.
func (d *tupleReader) tuple(rel *Relation) ([]Value, error) {
	n := d.take(2)
	if d.short {
		return nil, errors.New("message cut short")
	}
	cols := int(binary.BigEndian.Uint16(n))
	if cols != len(rel.Columns) {
		return nil, fmt.Errorf("tuple has %d columns, relation has %d", cols, len(rel.Columns))
	}
	vals := make([]Value, cols)
	for i := range vals {
		switch t := d.byte(); t {
		case pglogrepl.TupleDataTypeNull:
			vals[i] = Value{Kind: KindNull}
		case pglogrepl.TupleDataTypeToast:
			vals[i] = Value{Kind: KindUnchanged}
		case pglogrepl.TupleDataTypeText:
			l := d.take(4)
			if d.short {
				return nil, errors.New("message cut short")
			}
			v := d.take(int(int32(binary.BigEndian.Uint32(l))))
			if d.short {
				return nil, errors.New("message cut short")
			}
			vals[i] = Value{Kind: KindText, Data: v}
		default:
			if d.short {
				return nil, errors.New("message cut short")
			}
			return nil, fmt.Errorf("column %s: unexpected tuple data type %q", rel.Columns[i].Name, t)
		}
	}
	return vals, nil
}

// relation returns the cached relation for id.
func (a *assembler) relation(id uint32) (*Relation, error) {
	rel, ok := a.relations[id]
	if !ok {
		return nil, fmt.Errorf("change for relation %d, which the server has not described", id)
	}
	return rel, nil
}

// add appends c to the current transaction. When the current batch is
// full it is returned and c starts the next one, so the last batch of a
// transaction is never empty.
func (a *assembler) add(c Change) (step, error) {
	if !a.inTx {
		return step{}, fmt.Errorf("%s change outside a transaction", c.Op)
	}
	var full *Batch
	if a.cur != nil && len(a.cur.Changes) >= a.batchSize {
		full = a.cur
		a.cur = nil
	}
	if a.cur == nil {
		a.cur = &Batch{
			Xid:        a.xid,
			CommitLSN:  a.commitLSN,
			CommitTime: a.commitTime,
			Changes:    make([]Change, 0, min(a.batchSize, 16)),
		}
	}
	c.Index = a.index
	a.index++
	a.cur.Changes = append(a.cur.Changes, c)
	return step{batch: full, changes: 1}, nil
}

// fillUnchanged replaces the unchanged TOASTed values of an update's new
// row with the old row's values, when the server sent them.
func fillUnchanged(newRow, oldRow []Value) {
	if oldRow == nil {
		return
	}
	for i := range newRow {
		if newRow[i].Kind == KindUnchanged && oldRow[i].Kind == KindText {
			newRow[i] = oldRow[i]
		}
	}
}
