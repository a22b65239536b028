package walhooktest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// WaitSettled waits until walhook has settled (delivered or parked) every
// change committed to the database at db before the call: the slot's
// confirmed position passes the server's WAL position read now. A check
// that nothing more arrives belongs after it, not after a pause. The wait
// fails when the confirmed position has not moved for Patience.
func WaitSettled(t testing.TB, db, slot string) {
	t.Helper()
	WaitSlotPasses(t, db, slot, WALPosition(t, db))
}

// WaitSlotPasses waits until the confirmed position of slot reaches lsn,
// failing when it has not moved for Patience.
func WaitSlotPasses(t testing.TB, db, slot string, lsn pglogrepl.LSN) {
	t.Helper()
	conn := connect(t, db)
	defer conn.Close(context.Background())
	WaitProgress(t, fmt.Sprintf("the confirmed position of slot %s to reach %s", slot, lsn), Patience(), func() (bool, int) {
		var s string
		err := conn.QueryRow(t.Context(), `SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s)
		if err == pgx.ErrNoRows {
			return false, 0
		}
		if err != nil {
			t.Fatalf("read the confirmed position of slot %s: %v", slot, err)
		}
		confirmed, err := pglogrepl.ParseLSN(s)
		if err != nil {
			t.Fatalf("slot %s: confirmed position %q: %v", slot, s, err)
		}
		return confirmed >= lsn, int(confirmed)
	})
}

// WALPosition returns the server's current WAL position.
func WALPosition(t testing.TB, db string) pglogrepl.LSN {
	t.Helper()
	conn := connect(t, db)
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(t.Context(), `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		t.Fatalf("read the WAL position: %v", err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatalf("WAL position %q: %v", s, err)
	}
	return lsn
}

func connect(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Patience())
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	return conn
}
