package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Parked is a delivery kept in the state schema after its quick attempts
// failed, or while its webhook is disabled, until it can be delivered.
type Parked struct {
	ID            int64 // assigned by the store
	WebhookID     int64
	RowKey        string // resource and row key: later deliveries of the row wait behind this one
	Topic         string
	DeliveryID    string
	CommitLSN     pglogrepl.LSN
	Body          []byte
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
}

func insertParked(ctx context.Context, tx pgx.Tx, schema string, park []Parked) error {
	if len(park) == 0 {
		return nil
	}
	rows := make([][]any, len(park))
	for i, p := range park {
		rows[i] = []any{p.WebhookID, p.RowKey, p.Topic, p.DeliveryID, p.CommitLSN.String(), p.Body, p.Attempts, p.NextAttemptAt, p.LastError}
	}
	// pg_lsn has no binary COPY support in pgx; go through a text column.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS walhook_park_in (
		webhook_id bigint, row_key text, topic text, delivery_id text, commit_lsn text, body bytea,
		attempts integer, next_attempt_at timestamptz, last_error text) ON COMMIT DELETE ROWS`); err != nil {
		return fmt.Errorf("state: park deliveries: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"walhook_park_in"},
		[]string{"webhook_id", "row_key", "topic", "delivery_id", "commit_lsn", "body", "attempts", "next_attempt_at", "last_error"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("state: park deliveries: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.parked (webhook_id, row_key, topic, delivery_id, commit_lsn, body, attempts, next_attempt_at, last_error)
		SELECT webhook_id, row_key, topic, delivery_id, commit_lsn::pg_lsn, body, attempts, next_attempt_at, last_error
		FROM walhook_park_in`); err != nil {
		return fmt.Errorf("state: park deliveries: %w", err)
	}
	return nil
}

// Park writes deliveries to the parked table in one transaction.
func (s *Store) Park(ctx context.Context, park []Parked) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertParked(ctx, tx, s.schema, park) })
	if err != nil {
		return fmt.Errorf("state: park deliveries: %w", err)
	}
	return nil
}

// TrimParked enforces a webhook's park limit: while it holds more than
// maxRows deliveries or more than maxBytes of bodies, the oldest are
// deleted. Oldest means earliest committed: deliveries of different rows
// are parked by concurrent lanes, so the parking order (id) is not the
// commit order; within one row both agree. It returns the deleted
// deliveries' row keys (their count is what was dropped) and how many body
// bytes went with them.
func (s *Store) TrimParked(ctx context.Context, webhookID, maxRows, maxBytes int64) ([]string, int64, error) {
	rows, err := s.pool.Query(ctx, `
		WITH ranked AS (
			SELECT id, row_key,
				count(*) OVER newest AS n,
				sum(octet_length(body)) OVER newest AS bytes
			FROM `+s.schema+`.parked WHERE webhook_id = $1
			WINDOW newest AS (ORDER BY commit_lsn DESC, id DESC ROWS UNBOUNDED PRECEDING)
		)
		DELETE FROM `+s.schema+`.parked p USING ranked r
		WHERE p.id = r.id AND (r.n > $2 OR r.bytes > $3)
		RETURNING p.row_key, octet_length(p.body)`, webhookID, maxRows, maxBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("state: trim parked deliveries of webhook %d: %w", webhookID, err)
	}
	defer rows.Close()
	var keys []string
	var bytes int64
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, 0, fmt.Errorf("state: trim parked deliveries of webhook %d: %w", webhookID, err)
		}
		keys = append(keys, k)
		bytes += n
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("state: trim parked deliveries of webhook %d: %w", webhookID, err)
	}
	return keys, bytes, nil
}

// ParkedCount returns how many deliveries and body bytes webhook id has parked.
func (s *Store) ParkedCount(ctx context.Context, webhookID int64) (rows, bytes int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(octet_length(body)), 0) FROM `+s.schema+`.parked WHERE webhook_id = $1`,
		webhookID).Scan(&rows, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("state: count parked deliveries of webhook %d: %w", webhookID, err)
	}
	return rows, bytes, nil
}

// ParkedKeys returns the row keys webhook id has parked deliveries for, with
// how many each, so later events of those rows can wait behind them.
func (s *Store) ParkedKeys(ctx context.Context, webhookID int64) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT row_key, count(*) FROM `+s.schema+`.parked WHERE webhook_id = $1 GROUP BY row_key`, webhookID)
	if err != nil {
		return nil, fmt.Errorf("state: read parked rows of webhook %d: %w", webhookID, err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("state: read parked rows of webhook %d: %w", webhookID, err)
		}
		out[k] = n
	}
	return out, rows.Err()
}

// DueParked returns up to limit of webhook id's parked deliveries in the
// order they were parked, starting after id afterID. next_attempt_at is
// not consulted: the caller's retry schedule decides when a pass runs, so
// re-enabling a webhook delivers everything at once.
func (s *Store) DueParked(ctx context.Context, webhookID, afterID int64, limit int) ([]Parked, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, webhook_id, row_key, topic, delivery_id, commit_lsn::text, body, attempts, next_attempt_at, last_error
		FROM `+s.schema+`.parked WHERE webhook_id = $1 AND id > $2 ORDER BY id LIMIT $3`, webhookID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("state: read parked deliveries of webhook %d: %w", webhookID, err)
	}
	defer rows.Close()
	var out []Parked
	for rows.Next() {
		var p Parked
		var lsn string
		if err := rows.Scan(&p.ID, &p.WebhookID, &p.RowKey, &p.Topic, &p.DeliveryID, &lsn, &p.Body, &p.Attempts, &p.NextAttemptAt, &p.LastError); err != nil {
			return nil, fmt.Errorf("state: read parked deliveries of webhook %d: %w", webhookID, err)
		}
		if p.CommitLSN, err = pglogrepl.ParseLSN(lsn); err != nil {
			return nil, fmt.Errorf("state: read parked deliveries of webhook %d: %w", webhookID, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteParked removes a delivered parked delivery and resets the webhook's
// failure count in the same transaction. It reports whether the delivery
// was still parked: the park limit or an operator's discard may have
// removed it while it was being retried.
func (s *Store) DeleteParked(ctx context.Context, p Parked, r DeliveryResult) (bool, error) {
	var deleted bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.schema+`.parked WHERE id = $1`, p.ID)
		if err != nil {
			return err
		}
		deleted = tag.RowsAffected() == 1
		_, err = tx.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET failure_count = 0, last_delivery_at = $2, last_delivery_code = $3, last_delivery_error = '' WHERE id = $1`,
			p.WebhookID, r.At, r.Code)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("state: delete parked delivery %d: %w", p.ID, err)
	}
	return deleted, nil
}

// RescheduleParked records a failed retry of a parked delivery in one
// transaction: its next attempt time, and one more failure for the webhook
// (disabling it when the count exceeds maxFailures, or at once when
// disable is set).
func (s *Store) RescheduleParked(ctx context.Context, p Parked, r DeliveryResult, next time.Time, maxFailures int, disable bool) (Failure, error) {
	var f Failure
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if f, err = s.recordFailure(ctx, tx, p.WebhookID, 1, r, maxFailures, disable); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+s.schema+`.parked SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1`,
			p.ID, next, r.Error)
		if err != nil {
			return fmt.Errorf("state: reschedule parked delivery %d: %w", p.ID, err)
		}
		return nil
	})
	return f, err
}

// DiscardParked deletes every parked delivery of webhook id and returns how
// many there were. The webhook's revision moves, so a running walhook
// notices.
func (s *Store) DiscardParked(ctx context.Context, webhookID int64) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.schema+`.parked WHERE webhook_id = $1`, webhookID)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET revision = revision + 1 WHERE id = $1`, webhookID)
		if err == nil && tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("state: discard parked deliveries of webhook %d: %w", webhookID, err)
	}
	return n, nil
}
