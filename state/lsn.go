package state

import "github.com/jackc/pglogrepl"

// LSN is a position in the database's write-ahead log, as PostgreSQL's
// pg_lsn type holds it. walhook records transactions by their commit
// position, which orders them and makes delivery ids.
type LSN uint64

// String formats l as PostgreSQL does, e.g. "16/B374D848".
func (l LSN) String() string { return pglogrepl.LSN(l).String() }

// ParseLSN parses PostgreSQL's text form of a position.
func ParseLSN(s string) (LSN, error) {
	l, err := pglogrepl.ParseLSN(s)
	return LSN(l), err
}
