package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MinServerVersion is the oldest PostgreSQL major version cdc works with
// (pgoutput protocol version 2 and logical messages).
const MinServerVersion = 14

// outputPlugin is the logical decoding plugin of the slot.
const outputPlugin = "pgoutput"

// Table names a table to replicate.
type Table struct {
	Schema, Name string
}

// String returns "schema.name".
func (t Table) String() string { return t.Schema + "." + t.Name }

// sanitize returns the table as a quoted SQL identifier.
func (t Table) sanitize() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Config configures Setup and a Reader.
type Config struct {
	// ConnString is the database URL, a normal one: cdc adds
	// replication=database for the replication connection.
	ConnString string
	// Slot is the logical replication slot (pgoutput).
	Slot string
	// Publication is the publication the slot streams.
	Publication string
	// Tables are the tables to replicate; Setup creates the publication
	// FOR TABLE these. An empty Schema means "public".
	Tables []Table
	// StatusInterval is the period of standby status updates. It must be
	// well below the server's wal_sender_timeout. Zero means 10s.
	StatusInterval time.Duration
	// BatchSize is the most changes a Batch holds. Zero means 512.
	BatchSize int
	// StartLSN, when set, is called before each START_REPLICATION. A
	// position later than the slot's confirmed position is used as the
	// start and counts as confirmed: the caller persists what it has
	// settled, so that a replay after a server crash (which can lose the
	// slot's latest confirmed position) is skipped.
	StartLSN func(ctx context.Context) (pglogrepl.LSN, error)
	// Logger receives the reader's logs. Nil means no logging.
	Logger *slog.Logger
	// Metrics records the reader's metrics. Nil means none.
	Metrics *Metrics
}

const (
	defaultStatusInterval = 10 * time.Second
	defaultBatchSize      = 512
)

// withDefaults returns cfg with zero values replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = defaultStatusInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tables := make([]Table, len(cfg.Tables))
	for i, t := range cfg.Tables {
		if t.Schema == "" {
			t.Schema = "public"
		}
		tables[i] = t
	}
	cfg.Tables = tables
	return cfg
}

// validate checks what can be checked without a server.
func (cfg Config) validate() error {
	if err := checkSlotName(cfg.Slot); err != nil {
		return err
	}
	if cfg.Publication == "" {
		return errors.New("cdc: the publication name is empty")
	}
	return nil
}

// TableInfo describes a replicated table as Setup found it.
type TableInfo struct {
	Schema, Name string
	// KeyColumns are the primary key's columns, else the replica identity
	// index's, in index order; empty if the table has neither.
	KeyColumns []string
	// ReplicaIdentity is 'd' (default), 'f' (full), 'i' (index) or 'n'
	// (nothing).
	ReplicaIdentity byte
	// ToastableColumns are the columns whose type's storage is not plain:
	// their values can be TOASTed and arrive unchanged in an update.
	ToastableColumns []string
}

// Setup prepares the database for a Reader and describes the tables. It
// refuses servers older than PostgreSQL 14; checks that every table
// exists; checks that the role may open a replication connection; creates
// the publication FOR TABLE the tables if it is missing, or checks that
// the existing one includes them all; and creates the pgoutput slot if it
// is missing, or checks that the existing one uses pgoutput. The
// publication is created before the slot, so the slot's stream never
// predates it. Errors explain how to fix what is wrong.
func Setup(ctx context.Context, cfg Config) ([]TableInfo, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.Tables) == 0 {
		return nil, errors.New("cdc: no tables to replicate")
	}
	connCfg, err := parseConnString(cfg.ConnString)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return nil, connectError(&connCfg.Config, err, false)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if err := checkServerVersion(conn.PgConn().ParameterStatus("server_version")); err != nil {
		return nil, err
	}
	infos := make([]TableInfo, 0, len(cfg.Tables))
	for _, t := range cfg.Tables {
		info, err := describeTable(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}

	replCfg, err := replicationConfig(cfg.ConnString)
	if err != nil {
		return nil, err
	}
	repl, err := connectReplication(ctx, replCfg)
	if err != nil {
		return nil, err
	}
	defer repl.Close(context.WithoutCancel(ctx))

	if err := ensurePublication(ctx, conn, cfg.Publication, cfg.Tables); err != nil {
		return nil, err
	}
	if err := ensureSlot(ctx, conn, repl, cfg.Slot, cfg.Logger); err != nil {
		return nil, err
	}
	return infos, nil
}

// checkServerVersion refuses a server older than MinServerVersion. version
// is the server_version setting, e.g. "15.8 (Debian 15.8-1.pgdg120+1)".
func checkServerVersion(version string) error {
	v, _, _ := strings.Cut(strings.TrimSpace(version), " ")
	digits := v
	if i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = v[:i]
	}
	major, err := strconv.Atoi(digits)
	if err != nil {
		return fmt.Errorf("cdc: cannot read the server version %q", version)
	}
	if major < MinServerVersion {
		return fmt.Errorf("cdc: PostgreSQL %s is too old: walhook needs %d or newer", v, MinServerVersion)
	}
	return nil
}

// describeTable looks t up and returns its TableInfo.
func describeTable(ctx context.Context, conn *pgx.Conn, t Table) (TableInfo, error) {
	info := TableInfo{Schema: t.Schema, Name: t.Name}
	var (
		oid      uint32
		identity string
	)
	err := conn.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
		t.Schema, t.Name).Scan(&oid, &identity)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, fmt.Errorf("cdc: table %s does not exist", t)
	}
	if err != nil {
		return info, fmt.Errorf("cdc: look up table %s: %w", t, err)
	}
	if identity != "" {
		info.ReplicaIdentity = identity[0]
	}

	// The primary key, else the replica identity index, in index order.
	rows, _ := conn.Query(ctx, `
		WITH idx AS (
			SELECT indexrelid, indkey FROM pg_index
			WHERE indrelid = $1 AND (indisprimary OR indisreplident)
			ORDER BY indisprimary DESC
			LIMIT 1
		)
		SELECT a.attname
		FROM idx, unnest(idx.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum
		ORDER BY k.ord`, oid)
	if info.KeyColumns, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return info, fmt.Errorf("cdc: look up the key of table %s: %w", t, err)
	}

	rows, _ = conn.Query(ctx, `
		SELECT a.attname
		FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND ty.typstorage <> 'p'
		ORDER BY a.attnum`, oid)
	if info.ToastableColumns, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return info, fmt.Errorf("cdc: look up the columns of table %s: %w", t, err)
	}
	if len(info.KeyColumns) == 0 {
		info.KeyColumns = nil
	}
	if len(info.ToastableColumns) == 0 {
		info.ToastableColumns = nil
	}
	return info, nil
}

// ensurePublication creates the publication FOR TABLE tables if it is
// missing; if it exists it must include every table.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string, tables []Table) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("cdc: look up publication %q: %w", name, err)
	}
	if !exists {
		list := make([]string, len(tables))
		for i, t := range tables {
			list[i] = t.sanitize()
		}
		_, err := conn.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{name}.Sanitize()+" FOR TABLE "+strings.Join(list, ", "))
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != codeDuplicateObject {
			return fmt.Errorf("cdc: create publication %q: %w", name, err)
		}
		// Someone else created it a moment ago: check theirs.
	}

	rows, _ := conn.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1`, name)
	published, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Table])
	if err != nil {
		return fmt.Errorf("cdc: list the tables of publication %q: %w", name, err)
	}
	have := make(map[Table]bool, len(published))
	for _, t := range published {
		have[t] = true
	}
	var missing, names []string
	for _, t := range tables {
		if !have[t] {
			missing = append(missing, t.sanitize())
			names = append(names, t.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cdc: publication %q does not include %s; add them with ALTER PUBLICATION %s ADD TABLE %s",
			name, strings.Join(names, ", "), pgx.Identifier{name}.Sanitize(), strings.Join(missing, ", "))
	}
	return nil
}

// ensureSlot creates the logical slot with pgoutput if it is missing; if
// it exists it must be a logical pgoutput slot of this database.
func ensureSlot(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn, name string, logger *slog.Logger) error {
	var plugin, slotType, database *string
	var current string
	err := conn.QueryRow(ctx, `SELECT plugin::text, slot_type, database::text, current_database()::text
		FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&plugin, &slotType, &database, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, outputPlugin,
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
		var pgErr *pgconn.PgError
		if err == nil {
			logger.Info("created replication slot", "slot", name)
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != codeDuplicateObject {
			return fmt.Errorf("cdc: create replication slot %q: %w", name, err)
		}
		// Created concurrently: check it below.
		return ensureSlot(ctx, conn, repl, name, logger)
	}
	if err != nil {
		return fmt.Errorf("cdc: look up replication slot %q: %w", name, err)
	}
	fix := fmt.Sprintf("drop it (SELECT pg_drop_replication_slot('%s')) or choose another postgres.slot", name)
	if deref(slotType) != "logical" {
		return fmt.Errorf("cdc: replication slot %q is a %s slot, not a logical one; %s", name, deref(slotType), fix)
	}
	if deref(plugin) != outputPlugin {
		return fmt.Errorf("cdc: replication slot %q uses plugin %s, not %s; %s", name, deref(plugin), outputPlugin, fix)
	}
	if deref(database) != current {
		return fmt.Errorf("cdc: replication slot %q belongs to database %q, not %q; choose another postgres.slot", name, deref(database), current)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
