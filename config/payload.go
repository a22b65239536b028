package config

import (
	"errors"
	"regexp"
	"strings"
)

// firstParam matches the parameter $1 (and not $10, $11, …).
var firstParam = regexp.MustCompile(`\$1([^0-9]|$)`)

// payloadQuery checks what can be checked of a payload_query without a
// database: it is not blank and it uses $1, the array of keys. Its
// syntax, its parameter's type and its result columns are checked when
// walhook run prepares it at start.
func payloadQuery(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errors.New("must not be empty: give an SQL query, or leave payload_query out to send the row image")
	}
	if !firstParam.MatchString(s) {
		return "", errors.New("must use $1, the array of the resource's keys, e.g. WHERE o.id = ANY($1)")
	}
	return s, nil
}
