package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks yaml.Node trees and collects every problem it meets, so
// that one pass reports them all with their lines. Its helpers never stop
// at the first problem: a field that fails keeps its default and decoding
// goes on with the next one.
type decoder struct {
	file      string
	lookupEnv func(string) (string, bool)
	problems  Problems
	merged    map[*yaml.Node][]entry // entries of mappings, with merge keys applied
	merging   map[*yaml.Node]bool    // mappings whose merge keys are being applied
	keyLine   map[*yaml.Node]int     // the line of the key of each value decoded
}

// lineOf returns the line to report a problem with the value n on: the
// line of its key, when it has one, since a block value starts below it.
func (d *decoder) lineOf(n *yaml.Node) int {
	if line, ok := d.keyLine[n]; ok {
		return line
	}
	return n.Line
}

// add records a problem at line.
func (d *decoder) add(line int, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// decodeFunc decodes the value node n found at path.
type decodeFunc func(path string, n *yaml.Node)

// field is a key that a mapping may hold.
type field struct {
	name     string
	required bool
	decode   decodeFunc // nil: the key is accepted and ignored
	prefix   bool       // name is a prefix of the keys this field accepts
}

// matches reports whether f accepts key.
func (f field) matches(key string) bool {
	return f.name == key || f.prefix && strings.HasPrefix(key, f.name)
}

// given describes a key found in a mapping with a non-null value.
type given struct {
	line int  // the key's line
	ok   bool // its value decoded without problems
}

// entry is one key/value pair of a mapping.
type entry struct {
	key   string
	line  int
	value *yaml.Node
}

// resolve follows n through aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is a YAML null (~, null or nothing).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the kind of value n holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "an unknown kind of node"
}

// child returns the path of key under path.
func child(path, key string) string {
	if !simpleKey.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var simpleKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// entries returns the key/value pairs of the mapping n in file order, with
// merge keys (<<) applied: keys written in the mapping win over merged
// ones, and earlier merged mappings over later ones. It reports duplicate
// and non-string keys. A null n is an empty mapping; ok is false when n is
// no mapping at all.
func (d *decoder) entries(path string, n *yaml.Node) (es []entry, ok bool) {
	m := resolve(n)
	if isNull(m) {
		return nil, true
	}
	if m.Kind != yaml.MappingNode {
		d.add(d.lineOf(n), path, "must be a mapping, not %s", describe(m))
		return nil, false
	}
	if es, done := d.merged[m]; done {
		return es, true
	}
	if d.merging[m] {
		d.add(d.lineOf(n), path, "merges itself (<<)")
		return nil, false
	}
	d.merging[m] = true
	defer delete(d.merging, m)

	firstLine := make(map[string]int)
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merges = append(merges, v)
		case k.Kind != yaml.ScalarNode:
			d.add(k.Line, path, "keys must be strings, not %s", describe(resolve(k)))
		default:
			if first, dup := firstLine[k.Value]; dup {
				d.add(k.Line, child(path, k.Value), "duplicate key (first at line %d)", first)
				continue
			}
			firstLine[k.Value] = k.Line
			es = append(es, entry{key: k.Value, line: k.Line, value: v})
		}
	}
	for _, mv := range merges {
		sources := []*yaml.Node{mv}
		if s := resolve(mv); s.Kind == yaml.SequenceNode {
			sources = s.Content
		}
		for _, src := range sources {
			if resolve(src).Kind != yaml.MappingNode {
				d.add(src.Line, path, "<< must merge a mapping or a list of mappings, not %s", describe(resolve(src)))
				continue
			}
			more, _ := d.entries(path, src)
			for _, e := range more {
				if _, dup := firstLine[e.key]; !dup {
					firstLine[e.key] = e.line
					es = append(es, e)
				}
			}
		}
	}
	d.merged[m] = es
	return es, true
}

// mapping decodes the mapping n at path with fields: it reports unknown
// keys and missing required ones, and returns the keys given a non-null
// value. A null value counts as absent, so the field keeps its default.
func (d *decoder) mapping(path string, n *yaml.Node, fields []field) map[string]given {
	got := make(map[string]given)
	es, ok := d.entries(path, n)
	if !ok {
		return got
	}
	nullAt := make(map[string]int)
	for _, e := range es {
		i := slices.IndexFunc(fields, func(f field) bool { return f.matches(e.key) })
		if i < 0 {
			d.add(e.line, child(path, e.key), "unknown key%s", suggest(e.key, fields))
			continue
		}
		if isNull(resolve(e.value)) {
			nullAt[e.key] = e.line
			continue
		}
		if fields[i].decode == nil {
			continue
		}
		d.keyLine[e.value] = e.line
		before := len(d.problems)
		fields[i].decode(child(path, e.key), e.value)
		got[e.key] = given{line: e.line, ok: len(d.problems) == before}
	}
	for _, f := range fields {
		if _, ok := got[f.name]; ok || !f.required {
			continue
		}
		line, ok := nullAt[f.name]
		if !ok {
			line = d.lineOf(n)
		}
		d.add(line, child(path, f.name), "is required")
	}
	return got
}

// suggest returns a hint naming the known key closest to key, or listing
// them all when none is close.
func suggest(key string, fields []field) string {
	var names []string
	best, bestDist := "", 3
	for _, f := range fields {
		if f.prefix {
			continue
		}
		names = append(names, f.name)
		if dist := editDistance(strings.ToLower(key), f.name); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return "; known keys: " + strings.Join(names, ", ")
}

// editDistance returns the Levenshtein distance between a and b, capped
// for long inputs since it only serves to suggest a key.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sequence calls item for each element of the list n. A null n is an
// empty list; it returns false when n is no list at all.
func (d *decoder) sequence(path string, n *yaml.Node, item func(path string, n *yaml.Node)) bool {
	s := resolve(n)
	if isNull(s) {
		return true
	}
	if s.Kind != yaml.SequenceNode {
		d.add(d.lineOf(n), path, "must be a list, not %s", describe(s))
		return false
	}
	for i, it := range s.Content {
		item(fmt.Sprintf("%s[%d]", path, i), it)
	}
	return true
}

// scalarTags are the tags a scalar value may carry; tags are otherwise
// ignored, since every value is read from its (expanded) text.
var scalarTags = []string{"!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp"}

// scalar returns the text of the scalar n with ${VAR} references expanded.
// want names the expected value ("a duration") for messages; sens tells
// how much of the value problems may quote.
func (d *decoder) scalar(path string, n *yaml.Node, want string, sens sensitivity) (string, bool) {
	s := resolve(n)
	if s.Kind != yaml.ScalarNode || isNull(s) {
		d.add(d.lineOf(n), path, "must be %s, not %s", want, describe(s))
		return "", false
	}
	if tag := s.ShortTag(); !slices.Contains(scalarTags, tag) {
		d.add(d.lineOf(n), path, "unsupported YAML tag %s", tag)
		return "", false
	}
	v, problems := expand(s.Value, d.lookupEnv, sens)
	for _, p := range problems {
		d.add(d.lineOf(n), path, "%s", p)
	}
	if len(problems) == 0 && strings.IndexByte(v, 0) >= 0 {
		d.add(d.lineOf(n), path, "must not contain a NUL character")
		return "", false
	}
	return v, len(problems) == 0
}

// scalarField returns a decodeFunc that parses a scalar into *dst. parse
// errors become the problem's message as they are, so parse must not put a
// secret's value into them. A Secret destination is sensitive: its
// expansion problems quote nothing of it.
func scalarField[T any](d *decoder, dst *T, want string, parse func(string) (T, error)) decodeFunc {
	sens := plainValue
	if _, ok := any(dst).(*Secret); ok {
		sens = secretSens
	}
	return sensitiveField(d, dst, want, parse, sens)
}

// sensitiveField is scalarField for a value that may hold a secret
// although it is no Secret (a URL with credentials, say).
func sensitiveField[T any](d *decoder, dst *T, want string, parse func(string) (T, error), sens sensitivity) decodeFunc {
	return func(path string, n *yaml.Node) {
		s, ok := d.scalar(path, n, want, sens)
		if !ok {
			return
		}
		v, err := parse(s)
		if err != nil {
			d.add(d.lineOf(n), path, "%s", err.Error())
			return
		}
		*dst = v
	}
}
