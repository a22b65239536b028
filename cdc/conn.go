package cdc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// SQLSTATE codes cdc acts on.
const (
	codeInsufficientPrivilege = "42501"
	codeUndefinedObject       = "42704"
	codeUndefinedTable        = "42P01"
	codeDuplicateObject       = "42710"
	codeObjectInUse           = "55006"
)

// sessionParams are the settings the payload encoding relies on: values
// arrive in PostgreSQL's text format, and these fix that format.
var sessionParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO",
	"IntervalStyle":      "iso_8601",
	"extra_float_digits": "3",
}

// slotNameRE is what PostgreSQL accepts as a replication slot name.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func checkSlotName(name string) error {
	if !slotNameRE.MatchString(name) {
		return fmt.Errorf("cdc: replication slot name %q is invalid: use 1 to 63 lower-case letters, digits and _", name)
	}
	return nil
}

// parseConnString parses the database URL. pgconn's error text has the
// password redacted.
func parseConnString(connString string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("cdc: invalid database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, nil
}

// replicationConfig returns the configuration of the replication
// connection: the database URL with replication=database and the session
// settings the text format relies on.
func replicationConfig(connString string) (*pgconn.Config, error) {
	cfg, err := parseConnString(connString)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "walhook"
	}
	return pc, nil
}

// target names the server a configuration points at, as host:port (or the
// socket directory), never with credentials.
func target(cfg *pgconn.Config) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return cfg.Host
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// connectReplication opens a replication connection.
func connectReplication(ctx context.Context, cfg *pgconn.Config) (*pgconn.PgConn, error) {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(cfg, err, true)
	}
	return conn, nil
}

// connectError describes a failed connection: where to, as whom, and for
// a role without the replication privilege, how to grant it.
func connectError(cfg *pgconn.Config, err error, replication bool) error {
	var pgErr *pgconn.PgError
	if replication && errors.As(err, &pgErr) && pgErr.Code == codeInsufficientPrivilege {
		return &permanentError{fmt.Errorf("cdc: role %q cannot open a replication connection to %s: grant it with ALTER ROLE %s REPLICATION (or use a superuser): %w",
			cfg.User, target(cfg), pgx.Identifier{cfg.User}.Sanitize(), err)}
	}
	what := "connect to"
	if replication {
		what = "open a replication connection to"
	}
	return fmt.Errorf("cdc: cannot %s %s (database %q, role %q): %w", what, target(cfg), cfg.Database, cfg.User, err)
}

// permanentError marks an error that retrying cannot cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// isPermanent reports whether err cannot be cured by reconnecting: the
// slot or publication is missing, a privilege is lacking, the database or
// role is wrong, the slot is unusable, or the stream could not be decoded.
func isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case codeUndefinedObject, // slot or publication does not exist
		codeInsufficientPrivilege,
		"28000", "28P01", // invalid authorization, wrong password
		"3D000", // database does not exist
		"55000", // object not in prerequisite state: wal_level, invalidated or physical slot
		"22023", // invalid parameter value: a slot of another output plugin
		"0A000": // feature not supported
		return true
	}
	return false
}

// exec runs one simple-protocol statement and returns its rows.
func exec(ctx context.Context, conn *pgconn.PgConn, sql string) ([][][]byte, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		return nil, nil
	}
	return results[len(results)-1].Rows, nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
