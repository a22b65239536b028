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
		"insert cut short":     {msgRelation(1, "t", "id"), msgBegin(100, 1), msgInsert(1, str("xyz"))[:13]},
		"insert too short":     {msgRelation(1, "t", "id"), msgBegin(100, 1), []byte{'I', 0, 0}},
		"bytes after a tuple":  {msgRelation(1, "t", "id"), msgBegin(100, 1), append(msgInsert(1, str("x")), 'N')},
		"insert without N":     {msgRelation(1, "t", "id"), msgBegin(100, 1), append(binary.BigEndian.AppendUint32([]byte{'I'}, 1), 'X')},
		"binary value":         {msgRelation(1, "t", "id"), msgBegin(100, 1), append(binary.BigEndian.AppendUint32([]byte{'I'}, 1), 'N', 0, 1, 'b', 0, 0, 0, 0)},
		"negative length":      {msgRelation(1, "t", "id"), msgBegin(100, 1), append(binary.BigEndian.AppendUint32([]byte{'I'}, 1), 'N', 0, 1, 't', 0xff, 0xff, 0xff, 0xff)},
		"update without N":     {msgRelation(1, "t", "id"), msgBegin(100, 1), msgUpdate(1, []*string{str("x")}, []*string{str("y")})[:5+1+7]},
		"delete without tuple": {msgRelation(1, "t", "id"), msgBegin(100, 1), binary.BigEndian.AppendUint32([]byte{'D'}, 1)},
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

// TestAssemblerRowChanges: inserts, updates with and without the old row,
// and deletes with a key or the whole old row decode to their values,
// which do not share memory with the message fed.
func TestAssemblerRowChanges(t *testing.T) {
	a := newAssembler(64, slog.New(slog.DiscardHandler))
	del := func(kind byte, vals ...*string) []byte {
		b := binary.BigEndian.AppendUint32([]byte{'D'}, 1)
		return append(append(b, kind), tuple(vals...)...)
	}
	updKey := binary.BigEndian.AppendUint32([]byte{'U'}, 1)
	updKey = append(append(updKey, 'K'), tuple(str("7"), nil, nil)...)
	updKey = append(append(updKey, 'N'), tuple(str("7"), str("b"), str("\x00u"))...)
	msgs := [][]byte{
		msgRelation(1, "t", "id", "v", "w"),
		msgBegin(100, 1),
		msgInsert(1, str("7"), str(""), nil),
		msgUpdate(1, nil, []*string{str("7"), str("a"), str("\x00u")}),
		msgUpdate(1, []*string{str("7"), str("a"), str("big")}, []*string{str("7"), str("b"), str("\x00u")}),
		updKey,
		del('K', str("7"), nil, nil),
		del('O', str("7"), str("b"), str("big")),
	}
	var b *Batch
	for _, m := range msgs {
		st, err := a.feed(m)
		if err != nil {
			t.Fatalf("feed %q: %v", m[0], err)
		}
		clear(m) // the connection reuses its buffer
		if st.batch != nil {
			t.Fatal("a batch before the commit")
		}
	}
	st, err := a.feed(msgCommit(100, 110))
	if err != nil || st.batch == nil {
		t.Fatalf("commit: %v, batch %v", err, st.batch)
	}
	b = st.batch
	show := func(row []Value) string {
		if row == nil {
			return "-"
		}
		var parts []string
		for _, v := range row {
			switch v.Kind {
			case KindNull:
				parts = append(parts, "NULL")
			case KindUnchanged:
				parts = append(parts, "UNCHANGED")
			default:
				parts = append(parts, "'"+string(v.Data)+"'")
			}
		}
		return strings.Join(parts, ",")
	}
	want := []struct {
		op       Op
		new, old string
	}{
		{OpInsert, "'7','',NULL", "-"},
		{OpUpdate, "'7','a',UNCHANGED", "-"},
		{OpUpdate, "'7','b','big'", "'7','a','big'"},
		{OpUpdate, "'7','b',UNCHANGED", "'7',NULL,NULL"},
		{OpDelete, "-", "'7',NULL,NULL"},
		{OpDelete, "-", "'7','b','big'"},
	}
	if len(b.Changes) != len(want) {
		t.Fatalf("%d changes, want %d", len(b.Changes), len(want))
	}
	for i, w := range want {
		c := b.Changes[i]
		if c.Op != w.op || show(c.New) != w.new || show(c.Old) != w.old || c.Index != uint32(i) {
			t.Errorf("change %d: %s new %s old %s index %d; want %s new %s old %s", i, c.Op, show(c.New), show(c.Old), c.Index, w.op, w.new, w.old)
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
