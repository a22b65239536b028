// Package state keeps walhook's own state in a schema of the replicated
// database: webhook runtime status and failure counts, pending pings,
// webhooks created through the API, per-webhook delivered positions, the
// slot's settled position, and parked deliveries (the durable retry queue
// that lets the slot advance while a receiver is down).
//
// Every method is one small transaction; nothing is cached here.
package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/webhook"
)

// Origins of a webhook definition.
const (
	OriginConfig = "config" // declared in the YAML file
	OriginAPI    = "api"    // created through the management API
)

// ErrNotFound is returned when a webhook id does not exist.
var ErrNotFound = errors.New("state: webhook not found")

// Store is walhook's state schema in one database.
type Store struct {
	pool   *pgxpool.Pool
	schema string // quoted identifier
}

// Open connects to url, creates or migrates the schema and returns the
// store. A missing privilege gives an error naming the grant needed.
func Open(ctx context.Context, url, schema string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("state: parse database url: %w", err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "walhook-state"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: connect: %w", err)
	}
	s := &Store{pool: pool, schema: pgx.Identifier{schema}.Sanitize()}
	if err := s.migrate(ctx, schema); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store's connections.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the store's connection pool, for callers that read the
// schema directly (tests, admin commands).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// migrations are applied in order; the version table records how many ran.
var migrations = []string{
	`CREATE TABLE {s}.webhooks (
		id                  bigint PRIMARY KEY CHECK (id > 0),
		origin              text NOT NULL CHECK (origin IN ('config', 'api')),
		name                text NOT NULL,
		topic               text NOT NULL,
		delivery_url        text NOT NULL,
		secret              text NOT NULL DEFAULT '',
		signature           text NOT NULL DEFAULT 'woocommerce',
		definition_hash     text NOT NULL DEFAULT '',
		status              text NOT NULL CHECK (status IN ('active', 'paused', 'disabled')),
		failure_count       integer NOT NULL DEFAULT 0,
		pending_ping        boolean NOT NULL DEFAULT true,
		last_ping_at        timestamptz,
		last_ping_result    text NOT NULL DEFAULT '',
		last_delivery_at    timestamptz,
		last_delivery_code  integer NOT NULL DEFAULT 0,
		last_delivery_error text NOT NULL DEFAULT '',
		delivered_through   pg_lsn NOT NULL DEFAULT '0/0',
		revision            bigint NOT NULL DEFAULT 1,
		date_created        timestamptz NOT NULL DEFAULT now(),
		date_modified       timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE {s}.parked (
		id              bigserial PRIMARY KEY,
		webhook_id      bigint NOT NULL REFERENCES {s}.webhooks (id) ON DELETE CASCADE,
		row_key         text NOT NULL,
		topic           text NOT NULL,
		delivery_id     text NOT NULL,
		commit_lsn      pg_lsn NOT NULL,
		body            bytea NOT NULL,
		attempts        integer NOT NULL DEFAULT 0,
		next_attempt_at timestamptz NOT NULL,
		parked_at       timestamptz NOT NULL DEFAULT now(),
		last_error      text NOT NULL DEFAULT ''
	);
	CREATE INDEX parked_webhook_id ON {s}.parked (webhook_id, id);
	CREATE TABLE {s}.positions (
		slot        text PRIMARY KEY,
		settled_lsn pg_lsn NOT NULL
	);`,
	// failing_since: when the current run of consecutive failures began
	// (NULL after a success), for delivery.disable_after. The row index
	// finds each row's oldest parked delivery.
	`ALTER TABLE {s}.webhooks ADD COLUMN failing_since timestamptz;
	CREATE INDEX parked_webhook_row ON {s}.parked (webhook_id, row_key, id);`,
}

func (s *Store) migrate(ctx context.Context, schema string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("state: begin migration: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	// One walhook at a time migrates; a standby waits here.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "walhook-migrate:"+schema); err != nil {
		return fmt.Errorf("state: lock for migration: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("state: look for schema %s: %w", schema, err)
	}
	// CREATE SCHEMA IF NOT EXISTS would need CREATE on the database even
	// when an administrator made the schema beforehand.
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+s.schema); err != nil {
			return privilegeError(err, "create schema "+schema,
				fmt.Sprintf("GRANT CREATE ON DATABASE <db> TO <role>, or create it yourself: CREATE SCHEMA %s AUTHORIZATION <role>", schema))
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.schema+`.schema_version (version integer NOT NULL)`); err != nil {
		return privilegeError(err, "create "+schema+".schema_version",
			fmt.Sprintf("GRANT CREATE, USAGE ON SCHEMA %s TO <role>", schema))
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM `+s.schema+`.schema_version`).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.schema_version VALUES (0)`); err != nil {
			return privilegeError(err, "write "+schema+".schema_version", fmt.Sprintf("GRANT ALL ON ALL TABLES IN SCHEMA %s TO <role>", schema))
		}
	case err != nil:
		return privilegeError(err, "read "+schema+".schema_version", fmt.Sprintf("GRANT ALL ON ALL TABLES IN SCHEMA %s TO <role>", schema))
	}
	if version > len(migrations) {
		return fmt.Errorf("state: schema %s is at version %d, newer than this walhook knows (%d): upgrade walhook", schema, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, expandSchema(migrations[v], s.schema)); err != nil {
			return privilegeError(err, fmt.Sprintf("migrate schema %s to version %d", schema, v+1),
				fmt.Sprintf("GRANT ALL ON SCHEMA %s TO <role>", schema))
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE `+s.schema+`.schema_version SET version = $1`, len(migrations)); err != nil {
		return fmt.Errorf("state: record schema version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("state: commit migration: %w", err)
	}
	return nil
}

func expandSchema(sql, schema string) string {
	out := make([]byte, 0, len(sql))
	for i := 0; i < len(sql); i++ {
		if i+3 <= len(sql) && sql[i:i+3] == "{s}" {
			out = append(out, schema...)
			i += 2
			continue
		}
		out = append(out, sql[i])
	}
	return string(out)
}

// privilegeError turns a permission failure into a message naming the grant.
func privilegeError(err error, what, grant string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("state: %s: permission denied (%s): %s", what, pgErr.Message, grant)
	}
	return fmt.Errorf("state: %s: %w", what, err)
}

// Webhook is a webhook's stored row.
type Webhook struct {
	ID               int64
	Origin           string
	Name             string
	Topic            string
	DeliveryURL      string
	Secret           string // stored for API-created webhooks only
	Signature        webhook.Signature
	DefinitionHash   string
	Status           webhook.Status
	FailureCount     int
	PendingPing      bool
	LastPingAt       time.Time
	LastPingResult   string
	LastDeliveryAt   time.Time
	LastDeliveryCode int
	LastDeliveryErr  string
	DeliveredThrough LSN
	Revision         int64
	DateCreated      time.Time
	DateModified     time.Time
}

const webhookColumns = `id, origin, name, topic, delivery_url, secret, signature, definition_hash, status,
	failure_count, pending_ping, coalesce(last_ping_at, 'epoch'), last_ping_result,
	coalesce(last_delivery_at, 'epoch'), last_delivery_code, last_delivery_error,
	delivered_through::text, revision, date_created, date_modified`

func scanWebhook(row pgx.Row) (Webhook, error) {
	var w Webhook
	var lsn string
	err := row.Scan(&w.ID, &w.Origin, &w.Name, &w.Topic, &w.DeliveryURL, &w.Secret, &w.Signature, &w.DefinitionHash,
		&w.Status, &w.FailureCount, &w.PendingPing, &w.LastPingAt, &w.LastPingResult,
		&w.LastDeliveryAt, &w.LastDeliveryCode, &w.LastDeliveryErr, &lsn, &w.Revision, &w.DateCreated, &w.DateModified)
	if err != nil {
		return w, err
	}
	if w.LastPingAt.Unix() == 0 {
		w.LastPingAt = time.Time{}
	}
	if w.LastDeliveryAt.Unix() == 0 {
		w.LastDeliveryAt = time.Time{}
	}
	w.DeliveredThrough, err = ParseLSN(lsn)
	return w, err
}

// Webhooks returns every stored webhook, ordered by id.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+webhookColumns+` FROM `+s.schema+`.webhooks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("state: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("state: list webhooks: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: list webhooks: %w", err)
	}
	return out, nil
}

// Webhook returns one stored webhook, or ErrNotFound.
func (s *Store) Webhook(ctx context.Context, id int64) (Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM `+s.schema+`.webhooks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	if err != nil {
		return w, fmt.Errorf("state: read webhook %d: %w", id, err)
	}
	return w, nil
}

// SyncConfigWebhook records a webhook declared in the configuration. A new
// webhook is stored with the configured status. For a known one whose
// definition hash is unchanged, the stored runtime status wins; when the
// definition changed, the configured status is applied, the failure count
// reset, and a ping is made pending if the delivery URL changed. It returns
// the stored row after the change.
func (s *Store) SyncConfigWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	row := s.pool.QueryRow(ctx, `
		INSERT INTO `+s.schema+`.webhooks AS w (id, origin, name, topic, delivery_url, signature, definition_hash, status, pending_ping)
		VALUES ($1, 'config', $2, $3, $4, $5, $6, $7, $7 = 'active')
		ON CONFLICT (id) DO UPDATE SET
			name = excluded.name, topic = excluded.topic, delivery_url = excluded.delivery_url,
			signature = excluded.signature, definition_hash = excluded.definition_hash,
			status = excluded.status, failure_count = 0, failing_since = NULL,
			pending_ping = w.pending_ping OR (excluded.status = 'active' AND
				(w.delivery_url <> excluded.delivery_url OR w.last_ping_at IS NULL)),
			revision = w.revision + 1, date_modified = now()
		WHERE w.origin = 'config' AND w.definition_hash <> excluded.definition_hash
		RETURNING `+webhookColumns, w.ID, w.Name, w.Topic, w.DeliveryURL, w.Signature, w.DefinitionHash, w.Status)
	got, err := scanWebhook(row)
	if errors.Is(err, pgx.ErrNoRows) {
		// Unchanged definition, or an API-created webhook holds the id.
		got, err = s.Webhook(ctx, w.ID)
		if err != nil {
			return got, err
		}
		if got.Origin != OriginConfig {
			return got, fmt.Errorf("state: webhook id %d is taken by a webhook created through the API: choose another id in the configuration", w.ID)
		}
		return got, nil
	}
	if err != nil {
		return got, fmt.Errorf("state: store webhook %d: %w", w.ID, err)
	}
	return got, nil
}

// DeleteConfigWebhooksExcept removes configuration-declared webhooks whose
// ids are not in keep (they were removed from the file), with their parked
// deliveries. It returns the removed ids.
func (s *Store) DeleteConfigWebhooksExcept(ctx context.Context, keep []int64) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `DELETE FROM `+s.schema+`.webhooks WHERE origin = 'config' AND NOT (id = ANY($1)) RETURNING id`, keep)
	if err != nil {
		return nil, fmt.Errorf("state: remove webhooks gone from the configuration: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("state: remove webhooks gone from the configuration: %w", err)
	}
	return ids, nil
}

// CreateWebhook stores a webhook created through the API with the next
// free id and returns it. The webhook starts active with a pending ping.
func (s *Store) CreateWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return w, fmt.Errorf("state: create webhook: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `LOCK TABLE `+s.schema+`.webhooks IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return w, fmt.Errorf("state: create webhook: %w", err)
	}
	got, err := scanWebhook(tx.QueryRow(ctx, `
		INSERT INTO `+s.schema+`.webhooks (id, origin, name, topic, delivery_url, secret, signature, status, pending_ping)
		SELECT coalesce(max(id), 0) + 1, 'api', $1, $2, $3, $4, $5, $6, true FROM `+s.schema+`.webhooks
		RETURNING `+webhookColumns, w.Name, w.Topic, w.DeliveryURL, w.Secret, w.Signature, w.Status))
	if err != nil {
		return got, fmt.Errorf("state: create webhook: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return got, fmt.Errorf("state: create webhook: %w", err)
	}
	return got, nil
}

// UpdateWebhook applies change to the stored webhook id inside one
// transaction (the row is locked while change runs) and returns the result.
// A status change made here resets the failure count when it re-activates
// the webhook; a ping becomes pending when an active webhook's URL changes.
func (s *Store) UpdateWebhook(ctx context.Context, id int64, change func(*Webhook) error) (Webhook, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Webhook{}, fmt.Errorf("state: update webhook %d: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	old, err := scanWebhook(tx.QueryRow(ctx, `SELECT `+webhookColumns+` FROM `+s.schema+`.webhooks WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return old, ErrNotFound
	}
	if err != nil {
		return old, fmt.Errorf("state: update webhook %d: %w", id, err)
	}
	w := old
	if err := change(&w); err != nil {
		return old, err
	}
	if w.Status == webhook.StatusActive && old.Status != webhook.StatusActive {
		w.FailureCount = 0
	}
	// Ping when an active webhook's URL changes, and when a webhook
	// becomes active for the first time (it was never pinged).
	if w.Status == webhook.StatusActive && (w.DeliveryURL != old.DeliveryURL || old.Status != webhook.StatusActive && old.LastPingAt.IsZero()) {
		w.PendingPing = true
	}
	got, err := scanWebhook(tx.QueryRow(ctx, `
		UPDATE `+s.schema+`.webhooks SET name = $2, topic = $3, delivery_url = $4, secret = $5, signature = $6,
			status = $7, failure_count = $8, failing_since = CASE WHEN $8 = 0 THEN NULL ELSE failing_since END, pending_ping = $9, revision = revision + 1, date_modified = now()
		WHERE id = $1 RETURNING `+webhookColumns,
		id, w.Name, w.Topic, w.DeliveryURL, w.Secret, w.Signature, w.Status, w.FailureCount, w.PendingPing))
	if err != nil {
		return got, fmt.Errorf("state: update webhook %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return got, fmt.Errorf("state: update webhook %d: %w", id, err)
	}
	return got, nil
}

// DeleteWebhook removes a webhook and its parked deliveries and returns the
// removed row.
func (s *Store) DeleteWebhook(ctx context.Context, id int64) (Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `DELETE FROM `+s.schema+`.webhooks WHERE id = $1 RETURNING `+webhookColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	if err != nil {
		return w, fmt.Errorf("state: delete webhook %d: %w", id, err)
	}
	return w, nil
}

// Revisions returns every webhook's revision, for a cheap poll that notices
// changes made by another process (an admin command or another instance).
func (s *Store) Revisions(ctx context.Context) (map[int64]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, revision FROM `+s.schema+`.webhooks`)
	if err != nil {
		return nil, fmt.Errorf("state: read revisions: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]int64)
	for rows.Next() {
		var id, rev int64
		if err := rows.Scan(&id, &rev); err != nil {
			return nil, fmt.Errorf("state: read revisions: %w", err)
		}
		out[id] = rev
	}
	return out, rows.Err()
}

// DeliveryResult is the outcome of one delivery, as recorded for a webhook.
type DeliveryResult struct {
	At    time.Time
	Code  int    // HTTP status, 0 when no response arrived
	Error string // why the delivery failed; empty on success
}

// RecordSuccess resets the failure count and records the last delivery.
// The row is only written when something changes or at most once a second,
// so a busy webhook does not write on every delivery.
func (s *Store) RecordSuccess(ctx context.Context, id int64, r DeliveryResult) error {
	_, err := s.pool.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET failure_count = 0, failing_since = NULL,
			last_delivery_at = $2, last_delivery_code = $3, last_delivery_error = ''
		WHERE id = $1 AND (failure_count <> 0 OR last_delivery_at IS NULL OR last_delivery_at < $2::timestamptz - interval '1 second' OR last_delivery_error <> '')`,
		id, r.At, r.Code)
	if err != nil {
		return fmt.Errorf("state: record delivery of webhook %d: %w", id, err)
	}
	return nil
}

// Failure is what RecordFailure stored.
type Failure struct {
	FailureCount int
	// FailingSince is when the current run of consecutive failures began.
	FailingSince time.Time
	Disabled     bool // this failure disabled the webhook
}

// DisableRule decides whether an active webhook with count consecutive
// failed deliveries, failing since since, is disabled. It runs inside the
// transaction that counts the failure.
type DisableRule func(count int, since time.Time) bool

// RecordFailure counts failures failed deliveries of webhook id (at r.At)
// and disables the webhook when rule says so (or at once when disable is
// set, as for 410 Gone). Parked deliveries given in park are written in
// the same transaction, so a failure is never counted without its delivery
// being kept, nor kept without being counted. failures may be 0: the
// deliveries are then parked without counting anything.
func (s *Store) RecordFailure(ctx context.Context, id int64, failures int, r DeliveryResult, rule DisableRule, disable bool, park []Parked) (Failure, error) {
	var f Failure
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if f, err = s.recordFailure(ctx, tx, id, failures, r, rule, disable); err != nil {
			return err
		}
		return insertParked(ctx, tx, s.schema, park)
	})
	return f, err
}

// recordFailure counts failures inside tx; see RecordFailure.
func (s *Store) recordFailure(ctx context.Context, tx pgx.Tx, id int64, failures int, r DeliveryResult, rule DisableRule, disable bool) (Failure, error) {
	var f Failure
	var status webhook.Status
	var since *time.Time
	err := tx.QueryRow(ctx, `SELECT status, failure_count, failing_since FROM `+s.schema+`.webhooks WHERE id = $1 FOR UPDATE`, id).Scan(&status, &f.FailureCount, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return f, ErrNotFound
	}
	if err != nil {
		return f, fmt.Errorf("state: record failure of webhook %d: %w", id, err)
	}
	if failures == 0 {
		return f, nil
	}
	f.FailureCount += failures
	f.FailingSince = r.At
	if since != nil && f.FailureCount > failures {
		f.FailingSince = *since
	}
	f.Disabled = status == webhook.StatusActive && (disable || rule != nil && rule(f.FailureCount, f.FailingSince))
	if f.Disabled {
		status = webhook.StatusDisabled
	}
	_, err = tx.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET failure_count = $2, status = $3, failing_since = $8,
			revision = revision + CASE WHEN $4 THEN 1 ELSE 0 END,
			last_delivery_at = $5, last_delivery_code = $6, last_delivery_error = $7
		WHERE id = $1`, id, f.FailureCount, status, f.Disabled, r.At, r.Code, r.Error, f.FailingSince)
	if err != nil {
		return f, fmt.Errorf("state: record failure of webhook %d: %w", id, err)
	}
	return f, nil
}

// RecordPing stores a ping's result; a 200 clears the pending ping.
func (s *Store) RecordPing(ctx context.Context, id int64, ok bool, result string) error {
	_, err := s.pool.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET last_ping_at = now(), last_ping_result = $2,
		pending_ping = pending_ping AND NOT $3 WHERE id = $1`, id, result, ok)
	if err != nil {
		return fmt.Errorf("state: record ping of webhook %d: %w", id, err)
	}
	return nil
}

// Progress is how far a webhook got: everything of transactions committed
// at or before Through was settled for it, and its last delivery.
type Progress struct {
	Through  LSN
	LastAt   time.Time // zero when nothing was delivered since the start
	LastCode int
}

// SavePositions records the slot's settled position and each webhook's
// progress in one transaction. Positions never move back.
func (s *Store) SavePositions(ctx context.Context, slot string, settled LSN, progress map[int64]Progress) error {
	ids := make([]int64, 0, len(progress))
	lsns := make([]string, 0, len(progress))
	ats := make([]*time.Time, 0, len(progress))
	codes := make([]int32, 0, len(progress))
	for id, p := range progress {
		ids = append(ids, id)
		lsns = append(lsns, p.Through.String())
		if p.LastAt.IsZero() {
			ats = append(ats, nil)
		} else {
			at := p.LastAt
			ats = append(ats, &at)
		}
		codes = append(codes, int32(p.LastCode))
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO `+s.schema+`.positions (slot, settled_lsn) VALUES ($1, $2::pg_lsn)
		ON CONFLICT (slot) DO UPDATE SET settled_lsn = greatest(positions.settled_lsn, excluded.settled_lsn)`, slot, settled.String())
	if len(ids) > 0 {
		b.Queue(`UPDATE `+s.schema+`.webhooks w SET delivered_through = greatest(w.delivered_through, p.lsn::pg_lsn),
				last_delivery_at = CASE WHEN p.at > coalesce(w.last_delivery_at, '-infinity') THEN p.at ELSE w.last_delivery_at END,
				last_delivery_code = CASE WHEN p.at > coalesce(w.last_delivery_at, '-infinity') THEN p.code ELSE w.last_delivery_code END,
				last_delivery_error = CASE WHEN p.at > coalesce(w.last_delivery_at, '-infinity') THEN '' ELSE w.last_delivery_error END
			FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[]) AS p(id, lsn, at, code) WHERE w.id = p.id`, ids, lsns, ats, codes)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	if err != nil {
		return fmt.Errorf("state: save positions: %w", err)
	}
	return nil
}

// SettledLSN returns the slot's settled position recorded by SavePositions
// (0 when none).
func (s *Store) SettledLSN(ctx context.Context, slot string) (LSN, error) {
	var text string
	err := s.pool.QueryRow(ctx, `SELECT settled_lsn::text FROM `+s.schema+`.positions WHERE slot = $1`, slot).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: read settled position: %w", err)
	}
	return ParseLSN(text)
}
