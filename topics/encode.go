package topics

import (
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// kind is how a column's text value becomes JSON. It is chosen once per
// column from the column's type OID.
type kind uint8

const (
	kindString      kind = iota // JSON string of the text (text types and every unknown type)
	kindInteger                 // int2, int4, int8, oid: JSON number
	kindFloat                   // float4, float8: JSON number, or "NaN", "Infinity", "-Infinity"
	kindNumeric                 // numeric: JSON string of the exact text
	kindBool                    // bool: true or false
	kindJSON                    // json, jsonb: embedded
	kindTimestamptz             // RFC 3339 in UTC
	kindTimestamp               // RFC 3339 without offset
	kindDate                    // YYYY-MM-DD
	kindTime                    // hh:mm:ss[.ffffff]
	kindBytea                   // standard padded base64
	kindArray                   // JSON array of elements typed by these same rules
)

// scalarKind returns the kind of a scalar type OID.
func scalarKind(oid uint32) kind {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return kindInteger
	case pgtype.Float4OID, pgtype.Float8OID:
		return kindFloat
	case pgtype.NumericOID:
		return kindNumeric
	case pgtype.BoolOID:
		return kindBool
	case pgtype.JSONOID, pgtype.JSONBOID:
		return kindJSON
	case pgtype.TimestamptzOID:
		return kindTimestamptz
	case pgtype.TimestampOID:
		return kindTimestamp
	case pgtype.DateOID:
		return kindDate
	case pgtype.TimeOID:
		return kindTime
	case pgtype.ByteaOID:
		return kindBytea
	}
	return kindString
}

// Layouts of the time kinds. Go trims trailing zeros of .999999999, so a
// value keeps exactly the fraction the server printed.
const (
	layoutTimestamptz = time.RFC3339Nano
	layoutTimestamp   = "2006-01-02T15:04:05.999999999"
	layoutDate        = time.DateOnly
)

const microsecondsPerDay = 24 * 60 * 60 * 1_000_000

// maxArrayDims is PostgreSQL's MAXDIM.
const maxArrayDims = 6

// Errors that describe a malformed value. They are wrapped with the table,
// column and type by the caller.
var (
	errEmpty     = errors.New("empty value")
	errInteger   = errors.New("malformed integer")
	errFloat     = errors.New("malformed floating-point number")
	errNumeric   = errors.New("malformed numeric")
	errBool      = errors.New("malformed boolean")
	errJSON      = errors.New("malformed JSON")
	errTimeOfDay = errors.New("malformed time of day")
	errTimeRange = errors.New("time of day out of range")
)

// valueCodec holds what the encoders of one Mapper share: the pgtype scan
// plans, the scan targets they fill, and scratch space. Nothing in it is
// safe for concurrent use.
type valueCodec struct {
	types *pgtype.Map

	timestamptzPlan, timestampPlan, datePlan, timePlan, byteaPlan pgtype.ScanPlan

	timestamptz pgtype.Timestamptz
	timestamp   pgtype.Timestamp
	date        pgtype.Date
	timeOfDay   pgtype.Time
	bytea       pgtype.DriverBytes

	arrays map[uint32]*arrayCodec // by array type OID
	array  rawArray
	json   jsonChecker
}

func newValueCodec() *valueCodec {
	c := &valueCodec{
		types:  pgtype.NewMap(),
		arrays: make(map[uint32]*arrayCodec),
	}
	text := int16(pgtype.TextFormatCode)
	c.timestamptzPlan = c.types.PlanScan(pgtype.TimestamptzOID, text, &c.timestamptz)
	c.timestampPlan = c.types.PlanScan(pgtype.TimestampOID, text, &c.timestamp)
	c.datePlan = c.types.PlanScan(pgtype.DateOID, text, &c.date)
	c.timePlan = c.types.PlanScan(pgtype.TimeOID, text, &c.timeOfDay)
	c.byteaPlan = c.types.PlanScan(pgtype.ByteaOID, text, &c.bytea)
	return c
}

// typeName returns the name of a type OID for error messages.
func (c *valueCodec) typeName(oid uint32) string {
	if t, ok := c.types.TypeForOID(oid); ok {
		return t.Name
	}
	return "oid " + strconv.FormatUint(uint64(oid), 10)
}

// kindOf returns the kind of a column type, and for an array type the
// codec of its elements.
func (c *valueCodec) kindOf(oid uint32) (kind, *arrayCodec) {
	if k := scalarKind(oid); k != kindString {
		return k, nil
	}
	if ac, ok := c.arrays[oid]; ok {
		return kindArray, ac
	}
	t, ok := c.types.TypeForOID(oid)
	if !ok {
		return kindString, nil
	}
	pgArray, ok := t.Codec.(*pgtype.ArrayCodec)
	if !ok || pgArray.ElementType == nil {
		return kindString, nil
	}
	elem := pgArray.ElementType
	// The array's text is split into elements by pgtype's array parser; the
	// elements are handed over as raw text and typed by scalarKind.
	raw := &pgtype.ArrayCodec{
		ElementType: &pgtype.Type{Name: elem.Name, OID: elem.OID, Codec: rawCodec{}},
		Delimiter:   pgArray.Delimiter,
	}
	plan := raw.PlanScan(c.types, oid, pgtype.TextFormatCode, &c.array)
	if plan == nil {
		return kindString, nil
	}
	ac := &arrayCodec{elem: scalarKind(elem.OID), plan: plan}
	c.arrays[oid] = ac
	return kindArray, ac
}

// appendValue appends the JSON for one non-NULL text value of kind k.
func (c *valueCodec) appendValue(dst []byte, k kind, ac *arrayCodec, v []byte) ([]byte, error) {
	switch k {
	case kindString:
		return appendString(dst, v), nil
	case kindInteger:
		if !validInteger(v) {
			return dst, errInteger
		}
		return append(dst, v...), nil
	case kindFloat:
		if validNumber(v) {
			return append(dst, v...), nil
		}
		switch string(v) {
		case "NaN", "Infinity", "-Infinity":
			dst = append(dst, '"')
			dst = append(dst, v...)
			return append(dst, '"'), nil
		}
		return dst, errFloat
	case kindNumeric:
		if !validNumeric(v) {
			return dst, errNumeric
		}
		dst = append(dst, '"')
		dst = append(dst, v...)
		return append(dst, '"'), nil
	case kindBool:
		if len(v) == 1 {
			switch v[0] {
			case 't':
				return append(dst, "true"...), nil
			case 'f':
				return append(dst, "false"...), nil
			}
		}
		return dst, errBool
	case kindJSON:
		out, ok := c.json.appendJSON(dst, v)
		if !ok {
			return dst, errJSON
		}
		return out, nil
	}
	// The kinds below are decoded by pgtype, which reads a nil or empty
	// source as NULL.
	if len(v) == 0 {
		return dst, errEmpty
	}
	switch k {
	case kindTimestamptz:
		if err := c.timestamptzPlan.Scan(v, &c.timestamptz); err != nil {
			return dst, err
		}
		return appendTime(dst, c.timestamptz.Time.UTC(), c.timestamptz.InfinityModifier, layoutTimestamptz), nil
	case kindTimestamp:
		if err := c.timestampPlan.Scan(v, &c.timestamp); err != nil {
			return dst, err
		}
		return appendTime(dst, c.timestamp.Time, c.timestamp.InfinityModifier, layoutTimestamp), nil
	case kindDate:
		if err := c.datePlan.Scan(v, &c.date); err != nil {
			return dst, err
		}
		return appendTime(dst, c.date.Time, c.date.InfinityModifier, layoutDate), nil
	case kindTime:
		if !validTimeOfDay(v) {
			return dst, errTimeOfDay
		}
		if err := c.timePlan.Scan(v, &c.timeOfDay); err != nil {
			return dst, err
		}
		return appendTimeOfDay(dst, c.timeOfDay.Microseconds)
	case kindBytea:
		if err := c.byteaPlan.Scan(v, &c.bytea); err != nil {
			return dst, err
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, c.bytea)
		c.bytea = nil
		return append(dst, '"'), nil
	case kindArray:
		return c.appendArray(dst, ac, v)
	}
	return dst, fmt.Errorf("no encoder for kind %d", k)
}

// appendTime appends t formatted with layout as a JSON string, or
// "infinity" / "-infinity". Years before 1 AD use astronomical numbering
// (1 BC is 0000, 2 BC is -0001), as ISO 8601 does.
func appendTime(dst []byte, t time.Time, inf pgtype.InfinityModifier, layout string) []byte {
	switch inf {
	case pgtype.Infinity:
		return append(dst, `"infinity"`...)
	case pgtype.NegativeInfinity:
		return append(dst, `"-infinity"`...)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, layout)
	return append(dst, '"')
}

// appendTimeOfDay appends a time of day given in microseconds since
// midnight as a JSON string "hh:mm:ss" with the fraction it has.
func appendTimeOfDay(dst []byte, us int64) ([]byte, error) {
	if us < 0 || us > microsecondsPerDay {
		return dst, errTimeRange
	}
	sec := us / 1_000_000
	frac := us % 1_000_000
	dst = append(dst, '"')
	dst = appendTwoDigits(dst, sec/3600)
	dst = append(dst, ':')
	dst = appendTwoDigits(dst, sec/60%60)
	dst = append(dst, ':')
	dst = appendTwoDigits(dst, sec%60)
	if frac != 0 {
		var digits [7]byte
		digits[0] = '.'
		for i := 6; i >= 1; i-- {
			digits[i] = byte('0' + frac%10)
			frac /= 10
		}
		n := 7
		for digits[n-1] == '0' {
			n--
		}
		dst = append(dst, digits[:n]...)
	}
	return append(dst, '"'), nil
}

// validTimeOfDay reports whether s has the shape of a time of day as
// PostgreSQL prints it, hh:mm:ss with an optional fraction of up to six
// digits, which pgtype's more lenient parser then decodes.
func validTimeOfDay(s []byte) bool {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return false
	}
	for _, i := range [...]int{0, 1, 3, 4, 6, 7} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	if len(s) == 8 {
		return true
	}
	return s[8] == '.' && len(s) <= 15 && skipDigits(s, 9) == len(s) && len(s) > 9
}

func appendTwoDigits(dst []byte, n int64) []byte {
	return append(dst, byte('0'+n/10), byte('0'+n%10))
}

// arrayCodec encodes one array type.
type arrayCodec struct {
	elem kind            // the kind of the elements
	plan pgtype.ScanPlan // pgtype's text array scan into a rawArray
}

// appendArray decodes an array's text with pgtype and appends it as nested
// JSON arrays, one level per dimension, with NULL elements as null.
func (c *valueCodec) appendArray(dst []byte, ac *arrayCodec, v []byte) ([]byte, error) {
	a := &c.array
	defer a.reset()
	if err := ac.plan.Scan(v, a); err != nil {
		return dst, err
	}
	if len(a.dims) == 0 {
		return append(dst, '[', ']'), nil
	}
	next := 0
	return c.appendArrayLevel(dst, ac.elem, a.dims, a.elems, &next)
}

// appendArrayLevel appends the sub-array made of the elements from *next
// on with the dimensions dims.
func (c *valueCodec) appendArrayLevel(dst []byte, elem kind, dims []pgtype.ArrayDimension, elems [][]byte, next *int) ([]byte, error) {
	dst = append(dst, '[')
	for j := range int(dims[0].Length) {
		if j > 0 {
			dst = append(dst, ',')
		}
		if len(dims) > 1 {
			var err error
			if dst, err = c.appendArrayLevel(dst, elem, dims[1:], elems, next); err != nil {
				return dst, err
			}
			continue
		}
		e := elems[*next]
		*next++
		if e == nil {
			dst = append(dst, "null"...)
			continue
		}
		var err error
		if dst, err = c.appendValue(dst, elem, nil, e); err != nil {
			return dst, fmt.Errorf("array element %d: %w", *next, err)
		}
	}
	return append(dst, ']'), nil
}

// rawArray is the target pgtype's array scan fills: the dimensions and each
// element's text (nil for NULL), in row-major order.
type rawArray struct {
	dims  []pgtype.ArrayDimension
	elems [][]byte
}

// maxArrayElements bounds the element count a scanned array may declare.
const maxArrayElements = 1 << 28

// SetDimensions implements pgtype.ArraySetter. It accepts only shapes that
// nest cleanly: at most maxArrayDims dimensions of positive length.
func (a *rawArray) SetDimensions(dims []pgtype.ArrayDimension) error {
	if dims == nil {
		return errors.New("NULL array")
	}
	if len(dims) > maxArrayDims {
		return fmt.Errorf("array has %d dimensions, more than %d", len(dims), maxArrayDims)
	}
	n := 0
	if len(dims) > 0 {
		n = 1
		for _, d := range dims {
			if d.Length < 1 || n > maxArrayElements/int(d.Length) {
				return errors.New("array dimensions out of range")
			}
			n *= int(d.Length)
		}
	}
	a.dims = append(a.dims[:0], dims...)
	if cap(a.elems) < n {
		a.elems = make([][]byte, n)
	} else {
		a.elems = a.elems[:n]
	}
	return nil
}

// ScanIndex implements pgtype.ArraySetter.
func (a *rawArray) ScanIndex(i int) any { return &a.elems[i] }

// ScanIndexType implements pgtype.ArraySetter.
func (a *rawArray) ScanIndexType() any { return new([]byte) }

// reset drops the references to the last array's elements, and the
// element slice itself if one huge array made it large.
func (a *rawArray) reset() {
	clear(a.elems)
	a.elems = a.elems[:0]
	if cap(a.elems) > 1024 {
		a.elems = nil
	}
}

// rawCodec is the element codec of the arrays walhook decodes: it hands
// each element's text, as pgtype's array parser unquoted it, to the
// rawArray unchanged (nil for NULL), so that elements are typed by the
// same rules as columns.
type rawCodec struct{}

func (rawCodec) FormatSupported(format int16) bool { return format == pgtype.TextFormatCode }

func (rawCodec) PreferredFormat() int16 { return pgtype.TextFormatCode }

func (rawCodec) PlanEncode(*pgtype.Map, uint32, int16, any) pgtype.EncodePlan { return nil }

func (rawCodec) PlanScan(_ *pgtype.Map, _ uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*[]byte); ok && format == pgtype.TextFormatCode {
		return rawScanPlan{}
	}
	return nil
}

func (rawCodec) DecodeDatabaseSQLValue(*pgtype.Map, uint32, int16, []byte) (driver.Value, error) {
	return nil, errors.New("raw array element codec decodes into scan targets only")
}

func (rawCodec) DecodeValue(*pgtype.Map, uint32, int16, []byte) (any, error) {
	return nil, errors.New("raw array element codec decodes into scan targets only")
}

// rawScanPlan stores an element's text. pgtype hands over a fresh copy of
// every element, so keeping it is safe.
type rawScanPlan struct{}

func (rawScanPlan) Scan(src []byte, dst any) error {
	*dst.(*[]byte) = src
	return nil
}
