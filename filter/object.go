package filter

import (
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// member is one top-level member of a JSON object, its value still encoded.
type member struct {
	key []byte // unescaped
	raw []byte
}

// object is a CEL map over a JSON object read lazily: looking a key up
// scans the members only as far as that key and decodes its value only.
// Rows have tens of columns, so lookups go through the members in order.
type object struct {
	members []member // scanned so far
	scan    scanner
	buf     [8]member // members' first backing array
}

// init makes o the object b; an empty b is an empty object.
func (o *object) init(b []byte) {
	o.members = o.buf[:0]
	o.scan = scanner{b: b, done: len(b) == 0}
}

// all scans the rest of the object.
func (o *object) all() error {
	for {
		m, ok := o.scan.next()
		if !ok {
			return o.scan.err
		}
		o.members = append(o.members, m)
	}
}

var _ traits.Mapper = (*object)(nil)

// find returns the member key; an error when the object is malformed up
// to it.
func (o *object) find(key string) (member, bool, error) {
	for _, m := range o.members {
		if string(m.key) == key {
			return m, true, nil
		}
	}
	for {
		m, ok := o.scan.next()
		if !ok {
			return member{}, false, o.scan.err
		}
		o.members = append(o.members, m)
		if string(m.key) == key {
			return m, true, nil
		}
	}
}

func (o *object) malformed(err error) ref.Val { return types.NewErr("malformed row: %v", err) }

// Find implements traits.Mapper.
func (o *object) Find(key ref.Val) (ref.Val, bool) {
	s, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	m, ok, err := o.find(string(s))
	if err != nil {
		return o.malformed(err), true
	}
	if !ok {
		return nil, false
	}
	return value(m.raw), true
}

// Get implements traits.Indexer.
func (o *object) Get(key ref.Val) ref.Val {
	v, ok := o.Find(key)
	if !ok {
		return types.NewErr("no such key: %v", key)
	}
	return v
}

// Contains implements traits.Container.
func (o *object) Contains(key ref.Val) ref.Val {
	v, ok := o.Find(key)
	if types.IsError(v) {
		return v
	}
	return types.Bool(ok)
}

// Size implements traits.Sizer.
func (o *object) Size() ref.Val {
	if err := o.all(); err != nil {
		return o.malformed(err)
	}
	return types.Int(len(o.members))
}

// Iterator implements traits.Iterable: the keys in the object's order.
func (o *object) Iterator() traits.Iterator {
	if err := o.all(); err != nil {
		return types.NewStringList(types.DefaultTypeAdapter, nil).(traits.Lister).Iterator()
	}
	keys := make([]string, len(o.members))
	for i, m := range o.members {
		keys[i] = string(m.key)
	}
	return types.NewStringList(types.DefaultTypeAdapter, keys).(traits.Lister).Iterator()
}

// native decodes the whole object.
func (o *object) native() ref.Val {
	if err := o.all(); err != nil {
		return o.malformed(err)
	}
	m := make(map[string]any, len(o.members))
	for _, mb := range o.members {
		v := value(mb.raw)
		if types.IsError(v) {
			return v
		}
		m[string(mb.key)] = v
	}
	return types.NewStringInterfaceMap(adapter{}, m)
}

// ConvertToNative implements ref.Val.
func (o *object) ConvertToNative(typeDesc reflect.Type) (any, error) {
	v := o.native()
	if err, ok := v.(*types.Err); ok {
		return nil, err
	}
	return v.ConvertToNative(typeDesc)
}

// ConvertToType implements ref.Val.
func (o *object) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return o
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from '%s' to '%s'", types.MapType, t)
}

// Equal implements ref.Val, as CEL compares maps: the same keys with
// equal values.
func (o *object) Equal(other ref.Val) ref.Val {
	om, ok := other.(traits.Mapper)
	if !ok {
		return types.False
	}
	size := o.Size()
	if types.IsError(size) {
		return size
	}
	if om.Size() != size {
		return types.False
	}
	for _, m := range o.members {
		ov, found := om.Find(types.String(string(m.key)))
		if !found {
			return types.False
		}
		if types.Equal(value(m.raw), ov) != types.True {
			return types.False
		}
	}
	return types.True
}

// Type implements ref.Val.
func (o *object) Type() ref.Type { return types.MapType }

// Value implements ref.Val: the decoded map.
func (o *object) Value() any { return o.native().Value() }
