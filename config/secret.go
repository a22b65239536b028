package config

import "log/slog"

// redacted is what a Secret shows instead of its value.
const redacted = "[redacted]"

// Secret is a string that never prints: fmt, log/slog, encoding/json and
// yaml.v3 all see "[redacted]". Call Reveal where the value is really
// needed (to sign a payload or open a connection).
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]"; it makes %v and %s safe.
func (Secret) String() string { return redacted }

// GoString returns "[redacted]"; it makes %#v safe.
func (Secret) GoString() string { return redacted }

// LogValue returns "[redacted]" for log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]" for encoders that use
// encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON returns the JSON string "[redacted]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalYAML returns "[redacted]" for gopkg.in/yaml.v3.
func (Secret) MarshalYAML() (any, error) { return redacted, nil }
