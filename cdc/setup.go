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
	// Tables are the tables to replicate; Prepare creates the publication
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
	// PublicationCheckInterval is the period of a PublicationWatch's
	// checks. Zero means 30s.
	PublicationCheckInterval time.Duration
	// Logger receives the reader's logs. Nil means no logging.
	Logger *slog.Logger
	// Metrics records the reader's metrics. Nil means none.
	Metrics *Metrics
}

const (
	defaultStatusInterval           = 10 * time.Second
	defaultBatchSize                = 512
	defaultPublicationCheckInterval = 30 * time.Second
)

// withDefaults returns cfg with zero values replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = defaultStatusInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.PublicationCheckInterval <= 0 {
		cfg.PublicationCheckInterval = defaultPublicationCheckInterval
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

// Setup prepares the database for a Reader and describes the tables: it
// is Inspect followed by Prepare. Errors explain how to fix what is
// wrong.
func Setup(ctx context.Context, cfg Config) ([]TableInfo, error) {
	infos, err := Inspect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := Prepare(ctx, cfg); err != nil {
		return nil, err
	}
	return infos, nil
}

// Inspect checks, without changing anything, that the database can serve
// a Reader, and describes the tables. It refuses servers older than
// PostgreSQL 14; checks that every table exists; checks that the role may
// open a replication connection; checks that an existing publication
// includes every table (or is walhook's own, see PublicationComment) and
// that an existing slot is a pgoutput slot of this database. Errors
// explain how to fix what is wrong.
//
// Run Inspect, and every other check that can refuse a start, before
// Prepare: a refused start then leaves nothing behind.
func Inspect(ctx context.Context, cfg Config) ([]TableInfo, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.Tables) == 0 {
		return nil, errors.New("cdc: no tables to replicate")
	}
	conn, err := connect(ctx, cfg.ConnString)
	if err != nil {
		return nil, err
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
	_ = repl.Close(context.WithoutCancel(ctx))

	pub, err := lookupPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return nil, err
	}
	if pub.exists && !pub.owned {
		if err := pub.checkIncludes(cfg.Tables); err != nil {
			return nil, err
		}
	}
	if _, err := checkSlot(ctx, conn, cfg.Slot); err != nil {
		return nil, err
	}
	return infos, nil
}

// Prepared is what Prepare created, so that a start refused after it can
// remove it again.
type Prepared struct {
	cfg Config
	// CreatedPublication and CreatedSlot report what this Prepare created
	// (rather than found).
	CreatedPublication, CreatedSlot bool
}

// Prepare creates what a Reader needs and is missing: the publication FOR
// TABLE the tables (marked with PublicationComment as walhook's own), and
// the pgoutput slot. It adds missing tables to a publication marked as
// walhook's; a publication walhook does not own must already include
// them all. The publication is created before the slot, so the slot's
// stream never predates it. When creating the slot fails, a publication
// Prepare created is dropped again.
func Prepare(ctx context.Context, cfg Config) (*Prepared, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conn, err := connect(ctx, cfg.ConnString)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	replCfg, err := replicationConfig(cfg.ConnString)
	if err != nil {
		return nil, err
	}
	repl, err := connectReplication(ctx, replCfg)
	if err != nil {
		return nil, err
	}
	defer repl.Close(context.WithoutCancel(ctx))

	p := &Prepared{cfg: cfg}
	if p.CreatedPublication, err = ensurePublication(ctx, conn, cfg.Publication, cfg.Tables, cfg.Logger); err != nil {
		return nil, err
	}
	if p.CreatedSlot, err = ensureSlot(ctx, conn, repl, cfg.Slot, cfg.Logger); err != nil {
		if uerr := p.Undo(context.WithoutCancel(ctx)); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	return p, nil
}

// Undo drops the slot and the publication this Prepare created, for a
// start refused after Prepare. It must not be called once a Reader has
// streamed the slot. Undo on a nil *Prepared does nothing.
func (p *Prepared) Undo(ctx context.Context) error {
	if p == nil || (!p.CreatedSlot && !p.CreatedPublication) {
		return nil
	}
	conn, err := connect(ctx, p.cfg.ConnString)
	if err != nil {
		return fmt.Errorf("cdc: remove what this start created: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var errs []error
	if p.CreatedSlot {
		if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, p.cfg.Slot); err != nil {
			errs = append(errs, fmt.Errorf("cdc: drop replication slot %q created by this start: %w (drop it with SELECT pg_drop_replication_slot('%s'))", p.cfg.Slot, err, p.cfg.Slot))
		} else {
			p.CreatedSlot = false
			p.cfg.Logger.Info("dropped the replication slot this start created", "slot", p.cfg.Slot)
		}
	}
	if p.CreatedPublication {
		if _, err := conn.Exec(ctx, "DROP PUBLICATION "+pgx.Identifier{p.cfg.Publication}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("cdc: drop publication %q created by this start: %w (drop it with DROP PUBLICATION %s)", p.cfg.Publication, err, pgx.Identifier{p.cfg.Publication}.Sanitize()))
		} else {
			p.CreatedPublication = false
			p.cfg.Logger.Info("dropped the publication this start created", "publication", p.cfg.Publication)
		}
	}
	return errors.Join(errs...)
}

// connect opens a normal connection to the database.
func connect(ctx context.Context, connString string) (*pgx.Conn, error) {
	connCfg, err := parseConnString(connString)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return nil, connectError(&connCfg.Config, err, false)
	}
	return conn, nil
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

// PublicationComment marks a publication as walhook's own: Prepare sets
// it on the publications it creates. walhook adds missing mapped tables
// to a publication whose comment starts with it (at start, and while it
// runs when a mapped table was dropped and re-created); a publication
// without it is the administrator's, and walhook only reports what it
// lacks. An administrator hands a publication over to walhook with
// COMMENT ON PUBLICATION name IS 'managed by walhook'.
const PublicationComment = "managed by walhook"

// publication is what the catalog says about a publication.
type publication struct {
	name   string
	exists bool
	// owned reports that the publication's comment marks it as walhook's.
	owned bool
	// allTables reports a FOR ALL TABLES publication.
	allTables bool
	tables    map[Table]bool
}

// lookupPublication reads the publication name from the catalog.
func lookupPublication(ctx context.Context, conn *pgx.Conn, name string) (publication, error) {
	pub := publication{name: name, tables: map[Table]bool{}}
	var comment *string
	err := conn.QueryRow(ctx, `SELECT puballtables, obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1`, name).
		Scan(&pub.allTables, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return pub, nil
	}
	if err != nil {
		return pub, fmt.Errorf("cdc: look up publication %q: %w", name, err)
	}
	pub.exists = true
	pub.owned = strings.HasPrefix(deref(comment), PublicationComment)
	rows, _ := conn.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1`, name)
	published, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Table])
	if err != nil {
		return pub, fmt.Errorf("cdc: list the tables of publication %q: %w", name, err)
	}
	for _, t := range published {
		pub.tables[t] = true
	}
	return pub, nil
}

// missing returns the tables the publication does not include, in the
// order given.
func (p publication) missing(tables []Table) []Table {
	var out []Table
	for _, t := range tables {
		if !p.tables[t] {
			out = append(out, t)
		}
	}
	return out
}

// checkIncludes fails, naming the fix, unless the publication includes
// every table.
func (p publication) checkIncludes(tables []Table) error {
	missing := p.missing(tables)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("cdc: publication %q does not include %s; add them with %s",
		p.name, tableNames(missing), addTablesSQL(p.name, missing))
}

// tableNames lists tables as "schema.name, …".
func tableNames(tables []Table) string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.String()
	}
	return strings.Join(names, ", ")
}

// addTablesSQL is the statement that adds tables to the publication.
func addTablesSQL(pub string, tables []Table) string {
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t.sanitize()
	}
	return "ALTER PUBLICATION " + pgx.Identifier{pub}.Sanitize() + " ADD TABLE " + strings.Join(list, ", ")
}

// ensurePublication creates the publication FOR TABLE tables, marked as
// walhook's, if it is missing, and reports whether it did. An existing
// publication walhook owns gets its missing tables added; one it does not
// own must include every table.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string, tables []Table, logger *slog.Logger) (created bool, err error) {
	pub, err := lookupPublication(ctx, conn, name)
	if err != nil {
		return false, err
	}
	if !pub.exists {
		err := createPublication(ctx, conn, name, tables)
		var pgErr *pgconn.PgError
		if err == nil {
			logger.Info("created publication", "publication", name, "tables", tableNames(tables))
			return true, nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != codeDuplicateObject {
			return false, fmt.Errorf("cdc: create publication %q: %w", name, err)
		}
		// Someone else created it a moment ago: check theirs.
		if pub, err = lookupPublication(ctx, conn, name); err != nil {
			return false, err
		}
	}
	if !pub.owned {
		return false, pub.checkIncludes(tables)
	}
	if missing := pub.missing(tables); len(missing) > 0 {
		if err := addTables(ctx, conn, name, missing); err != nil {
			return false, err
		}
		logger.Warn("added mapped tables missing from walhook's publication", "publication", name, "tables", tableNames(missing))
	}
	return false, nil
}

// createPublication creates the publication and marks it as walhook's in
// one transaction.
func createPublication(ctx context.Context, conn *pgx.Conn, name string, tables []Table) error {
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t.sanitize()
	}
	ident := pgx.Identifier{name}.Sanitize()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+ident+" FOR TABLE "+strings.Join(list, ", ")); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "COMMENT ON PUBLICATION "+ident+" IS "+quoteLiteral(PublicationComment))
		return err
	})
}

// addTables adds tables to the publication; a table another process added
// a moment ago is not an error.
func addTables(ctx context.Context, conn *pgx.Conn, name string, tables []Table) error {
	for _, t := range tables {
		_, err := conn.Exec(ctx, addTablesSQL(name, []Table{t}))
		var pgErr *pgconn.PgError
		if err != nil && (!errors.As(err, &pgErr) || pgErr.Code != codeDuplicateObject) {
			return fmt.Errorf("cdc: add table %s to publication %q: %w (as a role that owns both, run %s)",
				t, name, err, addTablesSQL(name, []Table{t}))
		}
	}
	return nil
}

// checkSlot checks an existing slot: it must be a logical pgoutput slot of
// this database. It reports whether the slot exists.
func checkSlot(ctx context.Context, conn *pgx.Conn, name string) (exists bool, err error) {
	var plugin, slotType, database *string
	var current string
	err = conn.QueryRow(ctx, `SELECT plugin::text, slot_type, database::text, current_database()::text
		FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&plugin, &slotType, &database, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cdc: look up replication slot %q: %w", name, err)
	}
	fix := fmt.Sprintf("drop it (SELECT pg_drop_replication_slot('%s')) or choose another postgres.slot", name)
	if deref(slotType) != "logical" {
		return true, fmt.Errorf("cdc: replication slot %q is a %s slot, not a logical one; %s", name, deref(slotType), fix)
	}
	if deref(plugin) != outputPlugin {
		return true, fmt.Errorf("cdc: replication slot %q uses plugin %s, not %s; %s", name, deref(plugin), outputPlugin, fix)
	}
	if deref(database) != current {
		return true, fmt.Errorf("cdc: replication slot %q belongs to database %q, not %q; choose another postgres.slot", name, deref(database), current)
	}
	return true, nil
}

// ensureSlot creates the logical slot with pgoutput if it is missing, and
// reports whether it did; an existing slot must pass checkSlot.
func ensureSlot(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn, name string, logger *slog.Logger) (created bool, err error) {
	exists, err := checkSlot(ctx, conn, name)
	if err != nil || exists {
		return false, err
	}
	_, err = pglogrepl.CreateReplicationSlot(ctx, repl, name, outputPlugin,
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	var pgErr *pgconn.PgError
	if err == nil {
		logger.Info("created replication slot", "slot", name)
		return true, nil
	}
	if !errors.As(err, &pgErr) || pgErr.Code != codeDuplicateObject {
		return false, fmt.Errorf("cdc: create replication slot %q: %w", name, err)
	}
	// Created concurrently: check it.
	_, err = checkSlot(ctx, conn, name)
	return false, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
