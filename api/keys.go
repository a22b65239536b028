package api

import "sync/atomic"

// keySet is the accepted keys, replaced whole by API.SetKeys while
// requests read it: a request sees either the old set or the new one.
type keySet struct {
	byKey atomic.Pointer[map[string]Key]
}

// newKeySet returns a set holding keys.
func newKeySet(keys []Key) *keySet {
	s := &keySet{}
	s.set(keys)
	return s
}

// set replaces the keys.
func (s *keySet) set(keys []Key) {
	m := make(map[string]Key, len(keys))
	for _, k := range keys {
		m[k.ConsumerKey] = k
	}
	s.byKey.Store(&m)
}

// lookup returns the key whose consumer key is ck.
func (s *keySet) lookup(ck string) (Key, bool) {
	k, ok := (*s.byKey.Load())[ck]
	return k, ok
}

// empty reports whether no key is accepted (the API is off).
func (s *keySet) empty() bool { return len(*s.byKey.Load()) == 0 }

// SetKeys replaces the accepted keys, for a configuration reload: a key
// left out is refused from the next request on (nonces it used are
// forgotten as they expire). With no keys the API is off, as with none in
// Options. SetKeys is safe while the handler serves.
func (a *API) SetKeys(keys []Key) { a.auth.keys.set(keys) }
