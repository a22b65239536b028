package topics

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/walhook/walhook/cdc"
)

// Values of Resource.DeletedPayload.
const (
	// DeletedPayloadKey sends only the row's key columns with a deleted
	// event, as WooCommerce sends {"id": 123}.
	DeletedPayloadKey = "key"
	// DeletedPayloadOldRow sends the whole old row with a deleted event. It
	// needs the table's REPLICA IDENTITY FULL.
	DeletedPayloadOldRow = "old_row"
)

// Resource maps one table to a webhook resource.
type Resource struct {
	// Name is the resource's name, the first part of its topics, e.g. "order".
	Name string
	// Schema and Table name the table. An empty Schema means "public".
	Schema, Table string
	// KeyColumns identify a row (the table's primary key columns, from the
	// catalog). They make Event.Key and the deleted payload. When empty, the
	// columns of the table's replica identity are used.
	KeyColumns []string
	// ExcludeColumns never leave the process: they are left out of every
	// payload.
	ExcludeColumns []string
	// DeletedPayload is what a deleted event carries: DeletedPayloadKey
	// (the default, used for "" and any unknown value) or
	// DeletedPayloadOldRow.
	DeletedPayload string
}

// Event is one change as a webhook sees it.
type Event struct {
	Topic Topic
	// Key identifies the row within its resource: the text of its key
	// columns, joined by ',', with ',' and '\' escaped by '\', NULL
	// written \N and a value the server did not send \?, so that
	// different keys never give the same Key. A one-column key without
	// those characters is its value as is, e.g. "123". Key columns are
	// used here even when excluded from payloads. It is "" for actions,
	// and for a row the server sent no key for.
	Key string
	// Body is the JSON payload. It is owned by the Event.
	Body []byte
	// Index is the change's position in its transaction (cdc.Change.Index).
	Index uint32
	// Omitted lists columns left out of Body because their value was an
	// unchanged TOASTed value the server did not send (only possible
	// without REPLICA IDENTITY FULL). It is nil normally.
	Omitted []string
	// Old is the row before an update or a delete as a JSON object,
	// encoded as Body is (excluded columns left out), when the Mapper
	// keeps old rows (see Mapper.KeepOld) and the server sent the whole
	// old row (REPLICA IDENTITY FULL); nil otherwise. Filters read it; it
	// is never sent. It may share Body's bytes.
	Old []byte
}

// maxCachedRelations bounds the Mapper's cache of compiled relations; past
// it the cache starts over.
const maxCachedRelations = 4096

// maxScratch bounds the scratch buffers a Mapper keeps between changes, so
// that one huge row does not pin its memory.
const maxScratch = 1 << 20

// Mapper maps changes of configured tables to events. It is not safe for
// concurrent use: use one per goroutine. It compiles an encoder for each
// *cdc.Relation it meets, once, and keeps one per relation ID: a new
// Relation (after ALTER TABLE) replaces the encoder of the one before.
//
// Values arrive in PostgreSQL's text output format (TimeZone=UTC,
// DateStyle=ISO, IntervalStyle=iso_8601) and become JSON by column type:
//
//   - int2, int4, int8, oid: numbers;
//   - float4, float8: numbers, with NaN, Infinity and -Infinity as strings;
//   - numeric: a string holding the exact text, e.g. "12.50";
//   - bool: true or false;
//   - json, jsonb: embedded as they are (checked to be valid JSON, nested
//     at most 10000 deep, with invalid UTF-8 replaced by U+FFFD);
//   - timestamptz: RFC 3339 in UTC with the fraction the value has,
//     "2026-11-23T10:53:34.123456Z"; timestamp: the same without offset;
//     date: "2026-11-23"; time: "10:53:34.5"; infinite values as the
//     strings "infinity" and "-infinity"; years before 1 AD in
//     astronomical numbering (1 BC is 0000, 44 BC is -0043);
//   - bytea: a string of the bytes in padded standard base64;
//   - arrays of the types pgtype knows: nested JSON arrays, one level per
//     dimension (lower bounds dropped), elements typed by these same rules,
//     NULL elements as null;
//   - everything else (text types, uuid, inet, money, xml, interval, enums,
//     domains, arrays of user types, other user types): a string of the text.
//
// SQL NULL is null. A malformed value makes Map fail with an error that
// names the table, column and type.
type Mapper struct {
	tables    map[tableName]*resource
	relations map[uint32]*relationEncoder
	last      *relationEncoder
	codec     *valueCodec
	buf       []byte // the body being encoded
	key       []byte // the key being built
	keepOld   atomic.Bool
}

// KeepOld sets whether Map fills Event.Old, which costs a second encoding
// of each update and delete of a REPLICA IDENTITY FULL table: only filters
// read it. It is off by default and, unlike Map, safe to call from any
// goroutine; changes mapped after it returns follow the new setting.
func (m *Mapper) KeepOld(on bool) { m.keepOld.Store(on) }

type tableName struct{ schema, table string }

// resource is a Resource prepared for mapping.
type resource struct {
	created, updated, deleted Topic
	keyColumns                []string
	exclude                   map[string]bool
	oldRow                    bool
}

// NewMapper returns a Mapper for resources. When two resources name the
// same table, the first wins.
func NewMapper(resources []Resource) *Mapper {
	m := &Mapper{
		tables:    make(map[tableName]*resource, len(resources)),
		relations: make(map[uint32]*relationEncoder),
		codec:     newValueCodec(),
	}
	for _, r := range resources {
		schema := r.Schema
		if schema == "" {
			schema = "public"
		}
		name := tableName{schema, r.Table}
		if _, dup := m.tables[name]; dup {
			continue
		}
		res := &resource{
			created:    Topic{Resource: r.Name, Event: EventCreated},
			updated:    Topic{Resource: r.Name, Event: EventUpdated},
			deleted:    Topic{Resource: r.Name, Event: EventDeleted},
			keyColumns: append([]string(nil), r.KeyColumns...),
			exclude:    make(map[string]bool, len(r.ExcludeColumns)),
			oldRow:     r.DeletedPayload == DeletedPayloadOldRow,
		}
		for _, c := range r.ExcludeColumns {
			res.exclude[c] = true
		}
		m.tables[name] = res
	}
	return m
}

// relationEncoder is a Relation compiled for one resource.
type relationEncoder struct {
	rel     *cdc.Relation
	res     *resource // nil when no resource maps the table
	columns []columnEncoder
	all     []int // every column's index
	// key holds the indices of the resource's key columns, or of the
	// replica identity's columns when those are not all in the table.
	key []int
	// keyConfigured reports whether key holds the resource's key columns.
	keyConfigured bool
	// identity holds the indices of the replica identity's columns.
	identity []int
}

// columnEncoder encodes one column.
type columnEncoder struct {
	name     string
	prefix   []byte // `,"name":`, escaped once
	typeName string
	kind     kind
	array    *arrayCodec
	excluded bool
}

// encoder returns the compiled encoder of rel.
func (m *Mapper) encoder(rel *cdc.Relation) *relationEncoder {
	if e := m.last; e != nil && e.rel == rel {
		return e
	}
	e := m.relations[rel.ID]
	if e == nil || e.rel != rel {
		if len(m.relations) >= maxCachedRelations {
			clear(m.relations)
		}
		e = m.compile(rel)
		m.relations[rel.ID] = e
	}
	m.last = e
	return e
}

func (m *Mapper) compile(rel *cdc.Relation) *relationEncoder {
	e := &relationEncoder{rel: rel, res: m.tables[tableName{rel.Schema, rel.Table}]}
	if e.res == nil {
		return e
	}
	e.columns = make([]columnEncoder, len(rel.Columns))
	e.all = make([]int, len(rel.Columns))
	byName := make(map[string]int, len(rel.Columns))
	for i, col := range rel.Columns {
		k, ac := m.codec.kindOf(col.TypeOID)
		prefix := append([]byte{','}, appendString(nil, []byte(col.Name))...)
		e.columns[i] = columnEncoder{
			name:     col.Name,
			prefix:   append(prefix, ':'),
			typeName: m.codec.typeName(col.TypeOID),
			kind:     k,
			array:    ac,
			excluded: e.res.exclude[col.Name],
		}
		e.all[i] = i
		if _, dup := byName[col.Name]; !dup {
			byName[col.Name] = i
		}
		if col.Key {
			e.identity = append(e.identity, i)
		}
	}
	e.key, e.keyConfigured = e.identity, false
	if len(e.res.keyColumns) > 0 {
		key := make([]int, 0, len(e.res.keyColumns))
		for _, name := range e.res.keyColumns {
			i, ok := byName[name]
			if !ok {
				key = nil
				break
			}
			key = append(key, i)
		}
		if key != nil {
			e.key, e.keyConfigured = key, true
		}
	}
	return e
}

// Map returns the change's event; ok is false for a change of a table no
// resource maps (ignore it). An error names the table, column, type and
// the problem (a malformed value); Map never panics on any input.
func (m *Mapper) Map(ch *cdc.Change) (ev Event, ok bool, err error) {
	defer m.trimScratch()
	switch ch.Op {
	case cdc.OpMessage:
		return m.mapMessage(ch), true, nil
	case cdc.OpInsert, cdc.OpUpdate, cdc.OpDelete:
	default:
		return Event{}, false, fmt.Errorf("topics: change %d: unknown operation %d", ch.Index, ch.Op)
	}
	if ch.Rel == nil {
		return Event{}, false, fmt.Errorf("topics: %s change %d has no relation", ch.Op, ch.Index)
	}
	e := m.encoder(ch.Rel)
	if e.res == nil {
		return Event{}, false, nil
	}
	ev.Index = ch.Index
	m.buf = m.buf[:0]
	if ch.Op == cdc.OpDelete {
		ev.Topic = e.res.deleted
		cols := e.deletedColumns(ch.Old)
		m.buf, err = m.appendObject(m.buf, e, ch.Old, cols, &ev.Omitted)
		if err == nil {
			ev.Key = m.buildKey(ch.Old, nil, e.deletedKey(ch.Old))
		}
	} else {
		ev.Topic = e.res.created
		if ch.Op == cdc.OpUpdate {
			ev.Topic = e.res.updated
		}
		if len(ch.New) != len(e.columns) {
			return Event{}, false, fmt.Errorf("topics: %s %s: row has %d values, relation has %d columns",
				e.rel.QualifiedName(), ch.Op, len(ch.New), len(e.columns))
		}
		m.buf, err = m.appendObject(m.buf, e, ch.New, e.all, &ev.Omitted)
		if err == nil {
			ev.Key = m.buildKey(ch.New, ch.Old, e.key)
		}
	}
	if err != nil {
		return Event{}, false, err
	}
	ev.Body = make([]byte, len(m.buf))
	copy(ev.Body, m.buf)
	if ch.Op != cdc.OpInsert && m.keepOld.Load() && e.wholeOld(ch.Old) {
		if ch.Op == cdc.OpDelete && len(e.deletedColumns(ch.Old)) == len(e.all) {
			ev.Old = ev.Body // the deleted payload is the old row
		} else if ev.Old, err = m.encodeOld(e, ch.Old); err != nil {
			return Event{}, false, err
		}
	}
	return ev, true, nil
}

// wholeOld reports whether old is the whole old row, as the server sends it
// under REPLICA IDENTITY FULL.
func (e *relationEncoder) wholeOld(old []cdc.Value) bool {
	if e.rel.ReplicaIdentity != 'f' || len(old) != len(e.columns) {
		return false
	}
	for i := range old {
		if old[i].Kind != cdc.KindText && old[i].Kind != cdc.KindNull {
			return false
		}
	}
	return true
}

// encodeOld returns the JSON object of the whole old row.
func (m *Mapper) encodeOld(e *relationEncoder, old []cdc.Value) ([]byte, error) {
	var omitted []string
	b, err := m.appendObject(m.buf[:0], e, old, e.all, &omitted)
	m.buf = b
	if err != nil {
		return nil, fmt.Errorf("%w (in the old row)", err)
	}
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// deletedColumns returns the columns of a deleted payload: the key columns
// (or, with DeletedPayloadOldRow and REPLICA IDENTITY FULL, every column)
// when old has them, else the replica identity the server sent, else
// every column old has.
func (e *relationEncoder) deletedColumns(old []cdc.Value) []int {
	if e.res.oldRow && e.rel.ReplicaIdentity == 'f' && len(old) == len(e.columns) {
		return e.all
	}
	if e.keyConfigured && present(old, e.key) {
		return e.key
	}
	if len(e.identity) > 0 {
		return e.identity
	}
	return e.all
}

// deletedKey returns the columns Event.Key of a deletion is made of: the
// key columns when old has them, else the replica identity's.
func (e *relationEncoder) deletedKey(old []cdc.Value) []int {
	if present(old, e.key) {
		return e.key
	}
	return e.identity
}

// present reports whether row has a value for each of the columns: an
// identity's columns are never NULL, so a NULL means the server did not
// send one.
func present(row []cdc.Value, cols []int) bool {
	if len(cols) == 0 {
		return false
	}
	for _, i := range cols {
		if i >= len(row) || row[i].Kind != cdc.KindText {
			return false
		}
	}
	return true
}

// appendObject appends the JSON object of the columns cols of row, minus
// the excluded ones. Columns row has no value for are skipped; unchanged
// TOASTed values are skipped and listed in *omitted.
func (m *Mapper) appendObject(dst []byte, e *relationEncoder, row []cdc.Value, cols []int, omitted *[]string) ([]byte, error) {
	dst = append(dst, '{')
	first := true
	for _, i := range cols {
		c := &e.columns[i]
		if c.excluded || i >= len(row) {
			continue
		}
		v := &row[i]
		if v.Kind == cdc.KindUnchanged {
			*omitted = append(*omitted, c.name)
			continue
		}
		if first {
			dst = append(dst, c.prefix[1:]...)
			first = false
		} else {
			dst = append(dst, c.prefix...)
		}
		switch v.Kind {
		case cdc.KindNull:
			dst = append(dst, "null"...)
		case cdc.KindText:
			var err error
			if dst, err = m.codec.appendValue(dst, c.kind, c.array, v.Data); err != nil {
				return dst, fmt.Errorf("topics: %s column %q (%s): %w", e.rel.QualifiedName(), c.name, c.typeName, err)
			}
		default:
			return dst, fmt.Errorf("topics: %s column %q (%s): %w", e.rel.QualifiedName(), c.name, c.typeName,
				fmt.Errorf("unknown value kind %d", v.Kind))
		}
	}
	return append(dst, '}'), nil
}

// errNoValue marks a key column whose value is not known.
var errNoValue = errors.New("no value")

// buildKey returns the Event.Key of the columns cols of row: "" when row
// has none of them. An unchanged TOASTed key value is taken from old when
// old has it, and written \? when it is not known.
func (m *Mapper) buildKey(row, old []cdc.Value, cols []int) string {
	if len(cols) == 1 {
		// The common case: one column, usually digits.
		if v, err := keyValue(row, old, cols[0]); err == nil && !needsKeyEscape(v.Data) && v.Kind == cdc.KindText {
			return string(v.Data)
		}
	}
	k := m.key[:0]
	known := false
	for n, i := range cols {
		if n > 0 {
			k = append(k, ',')
		}
		v, err := keyValue(row, old, i)
		known = known || err == nil
		switch {
		case err != nil:
			k = append(k, `\?`...)
		case v.Kind == cdc.KindNull:
			k = append(k, `\N`...)
		default:
			for _, b := range v.Data {
				if b == ',' || b == '\\' {
					k = append(k, '\\')
				}
				k = append(k, b)
			}
		}
	}
	m.key = k
	if !known {
		return ""
	}
	return string(k)
}

// keyValue returns column i of row, or of old when row's is an unchanged
// TOASTed value.
func keyValue(row, old []cdc.Value, i int) (cdc.Value, error) {
	if i < len(row) && row[i].Kind != cdc.KindUnchanged {
		return row[i], nil
	}
	if i < len(old) && old[i].Kind == cdc.KindText {
		return old[i], nil
	}
	return cdc.Value{}, errNoValue
}

func needsKeyEscape(b []byte) bool {
	for _, c := range b {
		if c == ',' || c == '\\' {
			return true
		}
	}
	return false
}

// mapMessage returns the action event of a logical message:
// {"action":"<prefix>","arg":<content>}, with the content embedded when it
// is JSON and as a string otherwise.
func (m *Mapper) mapMessage(ch *cdc.Change) Event {
	b := append(m.buf[:0], `{"action":`...)
	b = appendString(b, []byte(ch.Prefix))
	b = append(b, `,"arg":`...)
	if out, ok := m.codec.json.appendJSON(b, ch.Content); ok {
		b = out
	} else {
		b = appendString(b, ch.Content)
	}
	b = append(b, '}')
	m.buf = b
	body := make([]byte, len(b))
	copy(body, b)
	return Event{
		Topic: Topic{Resource: ResourceAction, Event: ch.Prefix},
		Body:  body,
		Index: ch.Index,
	}
}

// trimScratch drops scratch buffers grown by a huge value.
func (m *Mapper) trimScratch() {
	if cap(m.buf) > maxScratch {
		m.buf = nil
	}
	if cap(m.key) > maxScratch {
		m.key = nil
	}
}
