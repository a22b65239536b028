package cdc

import (
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// pgoutput messages built byte by byte, for the assembler's edge cases.

func msgBegin(final pglogrepl.LSN, xid uint32) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, uint64(final))
	b = binary.BigEndian.AppendUint64(b, 0) // commit time
	return binary.BigEndian.AppendUint32(b, xid)
}

func msgCommit(commit, end pglogrepl.LSN) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, uint64(commit))
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	return binary.BigEndian.AppendUint64(b, 0)
}

// msgRelation describes relation id with text columns; the first is the key.
func msgRelation(id uint32, table string, cols ...string) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(append(b, "public"...), 0)
	b = append(append(b, table...), 0)
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for i, c := range cols {
		flags := byte(0)
		if i == 0 {
			flags = 1
		}
		b = append(b, flags)
		b = append(append(b, c...), 0)
		b = binary.BigEndian.AppendUint32(b, 25) // text
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// tuple encodes values: nil is NULL, "\x00u" is an unchanged TOAST value.
func tuple(vals ...*string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch {
		case v == nil:
			b = append(b, 'n')
		case *v == "\x00u":
			b = append(b, 'u')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
			b = append(b, *v...)
		}
	}
	return b
}

func msgInsert(rel uint32, vals ...*string) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'I'}, rel)
	return append(append(b, 'N'), tuple(vals...)...)
}

func msgUpdate(rel uint32, old, new []*string) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'U'}, rel)
	if old != nil {
		b = append(append(b, 'O'), tuple(old...)...)
	}
	return append(append(b, 'N'), tuple(new...)...)
}

func msgMessage(transactional bool, prefix, content string) []byte {
	b := []byte{'M', 0}
	if transactional {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(append(b, prefix...), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

func str(v string) *string { return &v }

func feedAll(t *testing.T, a *assembler, msgs ...[]byte) []step {
	t.Helper()
	var steps []step
	for _, m := range msgs {
		st, err := a.feed(m)
		if err != nil {
			t.Fatalf("feed %q: %v", m[0], err)
		}
		steps = append(steps, st)
	}
	return steps
}

func batches(steps []step) []*Batch {
	var bs []*Batch
	for _, st := range steps {
		if st.batch != nil {
			bs = append(bs, st.batch)
		}
	}
	return bs
}

func TestAssemblerBatchBoundaries(t *testing.T) {
	for _, tt := range []struct {
		changes int
		sizes   []int
	}{
		{1, []int{1}},
		{3, []int{3}},
		{4, []int{3, 1}},
		{6, []int{3, 3}},
		{7, []int{3, 3, 1}},
	} {
		a := newAssembler(3, slog.New(slog.DiscardHandler))
		msgs := [][]byte{msgRelation(1, "t", "id"), msgBegin(100, 7)}
		for i := 0; i < tt.changes; i++ {
			msgs = append(msgs, msgInsert(1, str("x")))
		}
		msgs = append(msgs, msgCommit(100, 120))
		bs := batches(feedAll(t, a, msgs...))
		if len(bs) != len(tt.sizes) {
			t.Fatalf("%d changes: %d batches, want %d", tt.changes, len(bs), len(tt.sizes))
		}
		index := uint32(0)
		for i, b := range bs {
			last := i == len(bs)-1
			if len(b.Changes) != tt.sizes[i] || b.Last != last || b.CommitLSN != 100 || b.Xid != 7 || (b.EndLSN == 120) != last {
				t.Errorf("%d changes, batch %d: %d changes, Last %v, CommitLSN %s, EndLSN %s, Xid %d",
					tt.changes, i, len(b.Changes), b.Last, b.CommitLSN, b.EndLSN, b.Xid)
			}
			for _, c := range b.Changes {
				if c.Index != index {
					t.Errorf("change index %d, want %d", c.Index, index)
				}
				index++
			}
		}
	}
}

func TestAssemblerEmptyTransactionIsSkipped(t *testing.T) {
	a := newAssembler(10, slog.New(slog.DiscardHandler))
	steps := feedAll(t, a, msgBegin(100, 1), msgMessage(false, "p", "not transactional"), msgCommit(100, 130))
	if bs := batches(steps); len(bs) != 0 {
		t.Fatalf("empty transaction gave %d batches", len(bs))
	}
	if got := steps[2].skippedEnd; got != 130 {
		t.Errorf("skippedEnd = %s, want 0/82", got)
	}
	if a.inTx {
		t.Error("still in a transaction after COMMIT")
	}
}

func TestAssemblerFillsUnchangedToast(t *testing.T) {
	a := newAssembler(10, slog.New(slog.DiscardHandler))
	unchanged := str("\x00u")
	steps := feedAll(t, a,
		msgRelation(1, "t", "id", "body", "n"),
		msgBegin(100, 1),
		msgUpdate(1, []*string{str("1"), str("big"), str("1")}, []*string{str("1"), unchanged, str("2")}),
		msgUpdate(1, nil, []*string{str("1"), unchanged, str("3")}),
		msgUpdate(1, []*string{str("1"), nil, str("3")}, []*string{str("1"), unchanged, str("4")}),
		msgCommit(100, 110))
	cs := batches(steps)[0].Changes
	if got := text(cs[0].New, 1); got != "big" {
		t.Errorf("with the old row: body = %q, want the old value", got)
	}
	if got := text(cs[1].New, 1); got != "UNCHANGED" {
		t.Errorf("without the old row: body = %q, want UNCHANGED", got)
	}
	if got := text(cs[2].New, 1); got != "UNCHANGED" {
		t.Errorf("with a NULL old value: body = %q, want UNCHANGED", got)
	}
}

func TestAssemblerCopiesMessageContent(t *testing.T) {
	a := newAssembler(10, slog.New(slog.DiscardHandler))
	msg := msgMessage(true, "action.sync", "payload")
	steps := feedAll(t, a, msgBegin(100, 1), msg)
	for i := range msg {
		msg[i] = 'X' // the connection reuses its buffer
	}
	steps = append(steps, feedAll(t, a, msgCommit(100, 110))...)
	c := batches(steps)[0].Changes[0]
	if c.Op != OpMessage || c.Prefix != "action.sync" || string(c.Content) != "payload" {
		t.Errorf("message = %s %q %q", c.Op, c.Prefix, c.Content)
	}
}

func TestAssemblerProtocolErrors(t *testing.T) {
	for name, msgs := range map[string][][]byte{
		"unknown relation":     {msgBegin(100, 1), msgInsert(9, str("x"))},
		"change outside tx":    {msgRelation(1, "t", "id"), msgInsert(1, str("x"))},
		"nested begin":         {msgBegin(100, 1), msgBegin(200, 2)},
		"commit outside tx":    {msgCommit(100, 110)},
		"column count differs": {msgRelation(1, "t", "id", "v"), msgBegin(100, 1), msgInsert(1, str("x"))},
	} {
		a := newAssembler(10, slog.New(slog.DiscardHandler))
		var err error
		for _, m := range msgs {
			if _, err = a.feed(m); err != nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRelationWithNewIDIsLogged: a Relation message naming a known table
// with a new relation id (the table was dropped and created again) is
// logged as a warning that changes were lost, also across sessions.
func TestRelationWithNewIDIsLogged(t *testing.T) {
	logs := &lockedBuffer{}
	a := newAssembler(8, slog.New(slog.NewTextHandler(logs, nil)))
	feed := func(msg []byte) {
		t.Helper()
		if _, err := a.feed(msg); err != nil {
			t.Fatal(err)
		}
	}
	feed(msgRelation(16384, "orders", "id"))
	feed(msgRelation(16384, "orders", "id", "status")) // ALTER TABLE: same id
	if l := logs.String(); l != "" {
		t.Fatalf("logged for a relation with the same id:\n%s", l)
	}
	a.reset()
	feed(msgRelation(16999, "orders", "id"))
	l := logs.String()
	if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "table=public.orders") || !strings.Contains(l, "cannot be recovered") {
		t.Errorf("no warning for a re-created table:\n%s", l)
	}
}
