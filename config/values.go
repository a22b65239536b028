package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// This file holds the parsers of typed scalar values. Their errors become
// Problem messages as they are: a parser of a secret never quotes it.

// parseString accepts any string.
func parseString(s string) (string, error) { return s, nil }

// nonEmpty accepts any non-empty string.
func nonEmpty(s string) (string, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	return s, nil
}

// oneOf returns a parser accepting exactly one of values.
func oneOf[T ~string](values ...T) func(string) (T, error) {
	return func(s string) (T, error) {
		for _, v := range values {
			if s == string(v) {
				return v, nil
			}
		}
		names := make([]string, len(values))
		for i, v := range values {
			names[i] = string(v)
		}
		return "", fmt.Errorf("must be %s, not %q", orList(names), s)
	}
}

// orList formats values as `"a", "b" or "c"`.
func orList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// matching returns a parser accepting strings that match re, described
// by rule in messages.
func matching(re *regexp.Regexp, rule string) func(string) (string, error) {
	return func(s string) (string, error) {
		if !re.MatchString(s) {
			return "", fmt.Errorf("%q must be %s", s, rule)
		}
		return s, nil
	}
}

// integer returns a parser of base-10 integers in [lo, hi]; a hi of the
// type's maximum leaves the range open above.
func integer[T int | int64](lo, hi T) func(string) (T, error) {
	return func(s string) (T, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		v := T(n)
		if errors.Is(err, strconv.ErrRange) || err == nil && int64(v) != n {
			return 0, fmt.Errorf("%q is out of range", s)
		}
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", s)
		}
		if v < lo || v > hi {
			his := strconv.FormatInt(int64(hi), 10)
			if int64(hi) == math.MaxInt64 || int64(hi) == math.MaxInt {
				his = ""
			}
			return 0, fmt.Errorf("must be %s, not %d", bounds(strconv.FormatInt(int64(lo), 10), his), v)
		}
		return v, nil
	}
}

// bounds describes a range by its printed bounds; an empty hi is open.
func bounds(lo, hi string) string {
	if hi == "" {
		return "at least " + lo
	}
	return "between " + lo + " and " + hi
}

// boolean parses true or false.
func boolean(s string) (bool, error) {
	switch s {
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	}
	return false, fmt.Errorf("must be true or false, not %q", s)
}

// duration returns a parser of Go durations ("5s", "1m30s") in [lo, hi].
func duration(lo, hi time.Duration) func(string) (time.Duration, error) {
	return func(s string) (time.Duration, error) {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (write e.g. 500ms, 5s or 1m30s)", s)
		}
		if v < lo || v > hi {
			return 0, fmt.Errorf("must be %s, not %s", bounds(formatDuration(lo), formatDuration(hi)), formatDuration(v))
		}
		return v, nil
	}
}

// formatDuration prints d as time.Duration does, without the zero units
// it appends ("1m" rather than "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sizeUnits are the units a size may end with, in lower case.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// size parses a positive byte count: an integer, or an integer and a unit
// such as "256MiB", "64MB", "1GiB" or "512KiB".
func size(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size (write e.g. 268435456, 512KiB, 64MB or 1GiB)", s)
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, bad
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if n == 0 {
		return 0, errors.New("must be more than 0 bytes")
	}
	return n * unit, nil
}

// identifierRE is a lower-case PostgreSQL name that needs no quoting.
var (
	slotRE       = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	identifierRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	resourceRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// httpURL parses an absolute http or https URL with a host. Its errors do
// not quote the URL, which may hold credentials.
func httpURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("is not a valid URL: %s", urlErrorText(err))
	}
	if u.Scheme == "" {
		return nil, errors.New("must be an absolute http or https URL, with scheme and host")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an http or https URL, not %s", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("must name a host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > math.MaxUint16 {
			return nil, errors.New("must have a port from 1 to 65535")
		}
	}
	return u, nil
}

// deliveryURL checks an absolute http or https URL and returns it as written.
func deliveryURL(s string) (string, error) {
	if _, err := httpURL(s); err != nil {
		return "", err
	}
	return s, nil
}

// sourceURL checks an http or https URL and returns it ending with "/".
func sourceURL(s string) (string, error) {
	if _, err := httpURL(s); err != nil {
		return "", err
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, nil
}

// postgresURL checks that s parses as a libpq URL or keyword/value
// connection string, without connecting and without quoting the password.
func postgresURL(s string) (Secret, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		return "", fmt.Errorf("is not a valid PostgreSQL connection string: %s", connStringError(s, err))
	}
	return Secret(s), nil
}

// connStringError describes why pgconn could not parse connString without
// quoting connString itself, which holds the password.
func connStringError(connString string, err error) string {
	const vague = "check its syntax"
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return vague
	}
	bare := *pce
	bare.ConnString = ""
	msg := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	var ue *url.Error
	if errors.As(pce, &ue) {
		msg = strings.ReplaceAll(msg, ue.Error(), urlErrorText(ue))
	}
	if strings.Contains(msg, connString) || containsPassword(connString, msg) {
		return vague
	}
	return msg
}

// quotedRE matches the quoted parts of net/url's messages.
var quotedRE = regexp.MustCompile(` ?"[^"]*"`)

// urlErrorText describes why net/url could not parse a URL without the
// URL or the parts of it that its messages quote, such as an escape or a
// port, which may be pieces of a password.
func urlErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return quotedRE.ReplaceAllString(err.Error(), "")
}

// passwordRE finds the password of a URL or keyword/value connection
// string, as well as a string that failed to parse allows.
var passwordRE = regexp.MustCompile(`(?i)(?:://[^:/@]*:([^@/?#]+)@|password\s*=\s*('(?:[^'\\]|\\.)*'|\S+))`)

// containsPassword reports whether msg holds what looks like the password
// of connString.
func containsPassword(connString, msg string) bool {
	for _, m := range passwordRE.FindAllStringSubmatch(connString, -1) {
		for _, pw := range m[1:] {
			pw = strings.Trim(pw, "'")
			if pw != "" && strings.Contains(msg, pw) {
				return true
			}
		}
	}
	return false
}

// isWhsec reports whether s has the Standard Webhooks secret shape:
// "whsec_" then standard base64 of at least one byte.
func isWhsec(s string) bool {
	b64, ok := strings.CutPrefix(s, "whsec_")
	raw, err := base64.StdEncoding.DecodeString(b64)
	return ok && err == nil && len(raw) > 0
}

// hexCredential returns a parser of prefix followed by 40 lower-case hex
// digits, the shape of WooCommerce consumer keys and secrets.
func hexCredential(prefix string) func(string) (string, error) {
	re := regexp.MustCompile(`^` + prefix + `[0-9a-f]{40}$`)
	return func(s string) (string, error) {
		if !re.MatchString(s) {
			return "", fmt.Errorf("must be %q followed by 40 lower-case hex digits", prefix)
		}
		return s, nil
	}
}

// prefix parses a CIDR prefix ("10.0.0.0/8", "fd00::/8") or a single
// address, which stands for itself alone.
func prefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (write e.g. 10.0.0.0/8 or fd00::/8)", s)
}

// listenAddr checks a host:port listen address.
func listenAddr(s string) (string, error) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q must be host:port, e.g. 127.0.0.1:9187", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || n > math.MaxUint16 {
		return "", fmt.Errorf("%q must end with a port number from 0 to 65535", s)
	}
	return s, nil
}

// location loads an IANA time zone such as "Europe/Paris".
func location(s string) (*time.Location, error) {
	if s == "" || s == "Local" {
		return nil, fmt.Errorf("%q is not an IANA time zone name (write e.g. UTC or Europe/Paris)", s)
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone name (write e.g. UTC or Europe/Paris)", s)
	}
	return loc, nil
}

// logLevel parses debug, info, warn or error, in any case.
func logLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf(`must be "debug", "info", "warn" or "error", not %q`, s)
}

// systemSchema reports whether PostgreSQL keeps schema for itself: its
// catalogs (pg_catalog, pg_toast, pg_temp_N and the like: every pg_ name
// is reserved) and information_schema.
func systemSchema(schema string) bool {
	return strings.HasPrefix(schema, "pg_") || schema == "information_schema"
}

// stateSchema checks the name of walhook's own schema.
func stateSchema(s string) (string, error) {
	if !identifierRE.MatchString(s) {
		return "", fmt.Errorf("%q must be 1 to 63 lower-case letters, digits or _, not starting with a digit", s)
	}
	if systemSchema(s) {
		return "", fmt.Errorf("%q is a schema PostgreSQL keeps for itself; name walhook's own schema, e.g. walhook", s)
	}
	return s, nil
}

// webhookName checks a webhook's name, which must be valid UTF-8 to be
// stored. Control characters are kept: what prints names escapes them.
func webhookName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("must be valid UTF-8")
	}
	return s, nil
}

// tableName splits "schema.table" or "table" (in schema public).
func tableName(s string) (schema, table string, err error) {
	parts := strings.Split(s, ".")
	if len(parts) == 1 {
		parts = []string{"public", parts[0]}
	}
	if len(parts) != 2 {
		return "", "", fmt.Errorf("%q must be schema.table or table", s)
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", "", fmt.Errorf("%q must be schema.table or table, each name 1 to 63 bytes without control characters", s)
		}
	}
	if systemSchema(parts[0]) {
		return "", "", fmt.Errorf("%q is in a schema PostgreSQL keeps for itself, whose tables cannot be published", s)
	}
	return parts[0], parts[1], nil
}
