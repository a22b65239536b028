package state

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	CommitLSN     LSN
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

// ParkedHeads returns, in parking order, the oldest parked delivery of
// each of webhook id's rows (a row's later deliveries wait behind it) whose
// next attempt is due by dueBy, starting after id afterID. It returns at
// most limit deliveries and stops before their bodies exceed maxBytes
// (always returning at least one when any is due), so a drain of large
// payloads is bounded by bytes, not only by count.
func (s *Store) ParkedHeads(ctx context.Context, webhookID, afterID int64, dueBy time.Time, limit int, maxBytes int64) ([]Parked, error) {
	rows, err := s.pool.Query(ctx, `
		WITH due AS (
			SELECT p.id, sum(octet_length(p.body)) OVER (ORDER BY p.id) AS running, row_number() OVER (ORDER BY p.id) AS n
			FROM (
				SELECT id, body FROM `+s.schema+`.parked p
				WHERE webhook_id = $1 AND id > $2 AND next_attempt_at <= $3
					AND NOT EXISTS (SELECT 1 FROM `+s.schema+`.parked q
						WHERE q.webhook_id = p.webhook_id AND q.row_key = p.row_key AND q.id < p.id)
				ORDER BY id LIMIT $4
			) p
		)
		SELECT p.id, p.webhook_id, p.row_key, p.topic, p.delivery_id, p.commit_lsn::text, p.body, p.attempts, p.next_attempt_at, p.last_error
		FROM due JOIN `+s.schema+`.parked p USING (id)
		WHERE due.running <= $5 OR due.n = 1
		ORDER BY p.id`, webhookID, afterID, dueBy, limit, maxBytes)
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
		if p.CommitLSN, err = ParseLSN(lsn); err != nil {
			return nil, fmt.Errorf("state: read parked deliveries of webhook %d: %w", webhookID, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: read parked deliveries of webhook %d: %w", webhookID, err)
	}
	return out, nil
}

// DeleteParked removes delivered parked deliveries of webhook id and
// records the success (failure count reset) in the same transaction. It
// returns the row keys and body sizes of those that were still parked:
// the park limit or an operator's discard may have removed some while
// they were being retried.
func (s *Store) DeleteParked(ctx context.Context, webhookID int64, ids []int64, r DeliveryResult) (keys []string, bytes int64, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		keys, bytes = keys[:0], 0
		rows, err := tx.Query(ctx, `DELETE FROM `+s.schema+`.parked WHERE webhook_id = $1 AND id = ANY($2) RETURNING row_key, octet_length(body)`, webhookID, ids)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
			bytes += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+s.schema+`.webhooks SET failure_count = 0, failing_since = NULL,
			last_delivery_at = $2, last_delivery_code = $3, last_delivery_error = '' WHERE id = $1`,
			webhookID, r.At, r.Code)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("state: delete delivered parked deliveries of webhook %d: %w", webhookID, err)
	}
	return keys, bytes, nil
}

// RescheduleParked records a failed retry of a parked delivery in one
// transaction: its next attempt time, and one more failure for the webhook
// (disabling it when rule says so, or at once when disable is set).
func (s *Store) RescheduleParked(ctx context.Context, p Parked, r DeliveryResult, next time.Time, rule DisableRule, disable bool) (Failure, error) {
	var f Failure
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if f, err = s.recordFailure(ctx, tx, p.WebhookID, 1, r, rule, disable); err != nil {
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

// NextParkedAttempt returns the earliest retry time after after among
// webhook id's parked deliveries, and false when none is scheduled then.
func (s *Store) NextParkedAttempt(ctx context.Context, webhookID int64, after time.Time) (time.Time, bool, error) {
	var next *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(next_attempt_at) FROM `+s.schema+`.parked WHERE webhook_id = $1 AND next_attempt_at > $2`,
		webhookID, after).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("state: read parked schedule of webhook %d: %w", webhookID, err)
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return *next, true, nil
}
