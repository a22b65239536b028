package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// State is what a Reader is doing.
type State int32

// The states of a Reader.
const (
	// Connecting: opening the replication connection, or waiting to try
	// again after it was lost.
	Connecting State = iota
	// Streaming: the reader holds the slot and streams it.
	Streaming
	// Standby: the slot is active for another process; the reader tries
	// to take it over every few seconds.
	Standby
	// Stopped: Run has returned (or has not been called).
	Stopped
)

// String returns the lower-case name of the state.
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Streaming:
		return "streaming"
	case Standby:
		return "standby"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

const (
	minBackoff      = time.Second
	maxBackoff      = 30 * time.Second
	standbyInterval = 2 * time.Second
	closeTimeout    = 2 * time.Second
)

// errSlotActive reports that another process streams the slot.
var errSlotActive = errors.New("cdc: replication slot is active for another process")

// Reader streams a logical replication slot. Create it with NewReader,
// run it with Run, and tell it with Confirm what is settled.
type Reader struct {
	cfg     Config
	logger  *slog.Logger
	metrics *Metrics

	state     atomic.Int32
	confirmed atomic.Uint64 // highest LSN given to Confirm
	running   atomic.Bool

	// Owned by the goroutine in Run.
	asm *assembler
	// reported is the position last sent to the server; it never moves
	// back.
	reported pglogrepl.LSN
	// lastHanded is the end LSN of the last transaction handed out (its
	// Last batch), set before the batch is sent.
	lastHanded pglogrepl.LSN
	// serverEnd is the latest WAL end the server reported: everything
	// before it has been sent to the reader.
	serverEnd pglogrepl.LSN
	// skippedEnd is the end of the latest transaction that carried no
	// change of the publication.
	skippedEnd pglogrepl.LSN
}

// NewReader returns a Reader for cfg. Setup should have run first.
func NewReader(cfg Config) *Reader {
	cfg = cfg.withDefaults()
	r := &Reader{cfg: cfg, logger: cfg.Logger, metrics: cfg.Metrics}
	r.asm = newAssembler(cfg.BatchSize, cfg.Logger)
	r.state.Store(int32(Stopped))
	return r
}

// State returns what the reader is doing now.
func (r *Reader) State() State { return State(r.state.Load()) }

func (r *Reader) setState(s State) {
	r.state.Store(int32(s))
	r.metrics.setState(s)
}

// Confirm tells the reader that every transaction ending at or before lsn
// (a Batch's EndLSN) is settled downstream. The reader reports it to the
// server, as the flush, write and apply position, in its next status
// update. Confirm is safe from any goroutine; a position lower than one
// already confirmed is ignored.
func (r *Reader) Confirm(lsn pglogrepl.LSN) {
	for {
		cur := r.confirmed.Load()
		if uint64(lsn) <= cur || r.confirmed.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}

// Run streams the slot until ctx is done, sending batches to out, a
// bounded channel owned by the caller (Run never closes it). Each
// committed transaction with changes of the publication arrives as one or
// more batches in commit order, the last with Last set and EndLSN; the
// caller calls Confirm with EndLSN once the transaction is settled.
// Rolled-back transactions never arrive.
//
// While out is full, Run stops reading the stream (backpressure) but keeps
// sending status updates, so the server does not drop the connection.
//
// Run reconnects with exponential backoff and jitter (1s to 30s) after a
// lost connection or a server restart. After a reconnect the server
// resends everything after the slot's confirmed position: transactions
// handed out but not yet confirmed arrive again, with the same CommitLSN
// and change indexes. Consumers skip (CommitLSN, Index) pairs they already
// have. When the slot is active for another process, Run reports Standby
// and tries again every 2s until it gets the slot.
//
// Run returns nil when ctx is done, after a last status update with the
// confirmed position (best effort), or an error that retrying cannot cure,
// such as a dropped slot or a missing publication. Run must not be called
// again while it is running.
func (r *Reader) Run(ctx context.Context, out chan<- *Batch) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("cdc: Reader.Run is already running")
	}
	defer r.running.Store(false)
	defer r.setState(Stopped)
	if err := r.cfg.validate(); err != nil {
		return err
	}
	replCfg, err := replicationConfig(r.cfg.ConnString)
	if err != nil {
		return err
	}

	r.setState(Connecting)
	attempt := 0
	for {
		streamed, err := r.session(ctx, replCfg, out)
		if ctx.Err() != nil {
			return nil
		}
		if streamed {
			attempt = 0
		}
		var delay time.Duration
		switch {
		case errors.Is(err, errSlotActive):
			if r.State() != Standby {
				r.logger.Info("replication slot is active for another process; waiting as standby", "slot", r.cfg.Slot)
				r.setState(Standby)
			}
			delay = standbyInterval
		case isPermanent(err):
			r.logger.Error("replication stopped", "slot", r.cfg.Slot, "error", err)
			return err
		default:
			delay = backoff(attempt)
			attempt++
			r.logger.Warn("replication connection lost; reconnecting", "slot", r.cfg.Slot, "error", err, "retry_in", delay)
			r.metrics.reconnect()
			r.setState(Connecting)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff returns the delay before reconnect attempt n (from 0): it
// doubles from 1s up to 30s, with up to a quarter of random jitter, and
// never falls below 1s.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 5 {
		d = minBackoff << n
	}
	d += rand.N(d/4 + 1)
	return min(d, maxBackoff)
}

// session runs one replication connection. It reports whether streaming
// started, and returns nil when ctx is done.
func (r *Reader) session(ctx context.Context, replCfg *pgconn.Config, out chan<- *Batch) (streamed bool, err error) {
	conn, err := connectReplication(ctx, replCfg)
	if err != nil {
		return false, err
	}
	r.metrics.setConnected(true)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = conn.Close(cctx)
		r.metrics.setConnected(false)
	}()

	start, err := r.startPosition(ctx, conn)
	if err != nil {
		return false, err
	}
	err = pglogrepl.StartReplication(ctx, conn, r.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '2'",
			"publication_names " + quoteLiteral(pgx.Identifier{r.cfg.Publication}.Sanitize()),
			"messages 'true'",
		},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == codeObjectInUse {
			return false, fmt.Errorf("%w: %w", errSlotActive, err)
		}
		return false, fmt.Errorf("cdc: start replication from slot %q: %w", r.cfg.Slot, err)
	}
	r.asm.reset()
	r.setState(Streaming)
	r.logger.Info("streaming replication slot", "slot", r.cfg.Slot, "publication", r.cfg.Publication, "start", start)
	return true, r.stream(ctx, conn, out)
}

// startPosition finds where to start: the latest of the slot's confirmed
// position, what this reader has reported or been told, and what
// cfg.StartLSN says is settled (which then counts as confirmed). It also
// fails clearly when the slot is gone.
func (r *Reader) startPosition(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	rows, err := exec(ctx, conn, "SELECT confirmed_flush_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = "+quoteLiteral(r.cfg.Slot))
	if err != nil {
		return 0, fmt.Errorf("cdc: look up replication slot %q: %w", r.cfg.Slot, err)
	}
	if len(rows) == 0 {
		return 0, &permanentError{fmt.Errorf("cdc: replication slot %q does not exist; it was dropped while walhook ran (restart walhook to create it again)", r.cfg.Slot)}
	}
	var slotPos pglogrepl.LSN
	if rows[0][0] != nil {
		if slotPos, err = pglogrepl.ParseLSN(string(rows[0][0])); err != nil {
			return 0, fmt.Errorf("cdc: replication slot %q: %w", r.cfg.Slot, err)
		}
	}
	if r.cfg.StartLSN != nil {
		settled, err := r.cfg.StartLSN(ctx)
		if err != nil {
			return 0, fmt.Errorf("cdc: read the settled position: %w", err)
		}
		if settled > slotPos {
			r.Confirm(settled)
		}
	}
	// The server never goes back before the slot's position; keeping
	// reported at or past it keeps status updates from going back either.
	r.reported = max(r.reported, slotPos)
	return max(r.reported, pglogrepl.LSN(r.confirmed.Load())), nil
}

// stream reads the replication stream until ctx is done (nil) or the
// connection fails.
func (r *Reader) stream(ctx context.Context, conn *pgconn.PgConn, out chan<- *Batch) error {
	// Report the position at once: it may include a settled StartLSN.
	nextStatus := time.Now()
	// A read waits for the next message until the next status is due: the
	// connection's read deadline, set when that time moves, rather than a
	// context per message (which costs a timer and a watcher each). The
	// end of ctx interrupts a read by moving the deadline to now, once.
	netConn := conn.Conn()
	var readDeadline time.Time
	stopWatch := context.AfterFunc(ctx, func() { _ = netConn.SetReadDeadline(time.Now()) })
	defer func() {
		if stopWatch() {
			_ = netConn.SetReadDeadline(time.Time{})
		}
	}()
	for {
		if ctx.Err() != nil {
			r.finalStatus(conn)
			return nil
		}
		if !time.Now().Before(nextStatus) {
			if err := r.sendStatus(conn); err != nil {
				return err
			}
			nextStatus = time.Now().Add(r.cfg.StatusInterval)
		}
		if !nextStatus.Equal(readDeadline) {
			if err := netConn.SetReadDeadline(nextStatus); err != nil {
				return fmt.Errorf("cdc: set the replication connection's read deadline: %w", err)
			}
			readDeadline = nextStatus
			// ctx may have ended before the deadline was set: its watcher
			// then ran already, and its deadline was replaced.
			if ctx.Err() != nil {
				r.finalStatus(conn)
				return nil
			}
		}

		raw, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				r.finalStatus(conn)
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("cdc: receive from replication stream: %w", err)
		}

		var msg *pgproto3.CopyData
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			msg = m
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("cdc: replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("cdc: the server ended the replication stream")
		default:
			continue // notices and parameter changes
		}
		if len(msg.Data) == 0 {
			continue
		}

		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return &permanentError{fmt.Errorf("cdc: parse keepalive: %w", err)}
			}
			r.observeServer(ka.ServerWALEnd)
			if ka.ReplyRequested {
				if err := r.sendStatus(conn); err != nil {
					return err
				}
				nextStatus = time.Now().Add(r.cfg.StatusInterval)
			}

		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return &permanentError{fmt.Errorf("cdc: parse XLogData: %w", err)}
			}
			r.metrics.addBytes(len(xld.WALData))
			st, err := r.asm.feed(xld.WALData)
			if err != nil {
				return &permanentError{fmt.Errorf("cdc: decode replication stream at %s: %w", xld.WALStart, err)}
			}
			r.observeServer(xld.ServerWALEnd)
			r.metrics.addChanges(st.changes)
			if st.skippedEnd > r.skippedEnd {
				r.skippedEnd = st.skippedEnd
			}
			if st.batch != nil {
				if err := r.deliver(ctx, conn, out, st.batch, &nextStatus); err != nil {
					if ctx.Err() != nil {
						r.finalStatus(conn)
						return nil
					}
					return err
				}
			}
		}
	}
}

// observeServer records a WAL end position reported by the server.
func (r *Reader) observeServer(lsn pglogrepl.LSN) {
	if lsn > r.serverEnd {
		r.serverEnd = lsn
		r.metrics.positions(r.serverEnd, r.reported)
	}
}

// deliver sends b to out. While out is full it keeps the connection alive
// with a status update whenever one is due.
func (r *Reader) deliver(ctx context.Context, conn *pgconn.PgConn, out chan<- *Batch, b *Batch, nextStatus *time.Time) error {
	if b.Last {
		// Before the send: from now on the idle rule must not pass it.
		r.lastHanded = b.EndLSN
	}
	select {
	case out <- b:
		r.handedOut(b)
		return nil
	default:
	}
	timer := time.NewTimer(time.Until(*nextStatus))
	defer timer.Stop()
	for {
		select {
		case out <- b:
			r.handedOut(b)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if err := r.sendStatus(conn); err != nil {
				return err
			}
			*nextStatus = time.Now().Add(r.cfg.StatusInterval)
			timer.Reset(r.cfg.StatusInterval)
		}
	}
}

func (r *Reader) handedOut(b *Batch) {
	if b.Last {
		r.metrics.transaction()
	}
}

// position returns the position to report: the confirmed position, or,
// when the reader is between transactions and everything it handed out is
// confirmed, the server's latest position (so an idle slot does not
// retain WAL). It never goes back and never passes a transaction handed
// out but not confirmed.
func (r *Reader) position() pglogrepl.LSN {
	confirmed := pglogrepl.LSN(r.confirmed.Load())
	pos := max(r.reported, confirmed)
	if !r.asm.inTx && confirmed >= r.lastHanded {
		pos = max(pos, r.serverEnd, r.skippedEnd)
	}
	return pos
}

// sendStatus sends a standby status update with the current position.
func (r *Reader) sendStatus(conn *pgconn.PgConn) error {
	pos := r.position()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos,
		WALFlushPosition: pos,
		WALApplyPosition: pos,
	})
	if err != nil {
		return fmt.Errorf("cdc: send standby status update: %w", err)
	}
	if pos != r.reported {
		r.logger.Debug("confirmed position", "slot", r.cfg.Slot, "lsn", pos)
	}
	r.reported = pos
	r.metrics.positions(r.serverEnd, pos)
	return nil
}

// finalStatus sends a last status update on the way out, best effort.
func (r *Reader) finalStatus(conn *pgconn.PgConn) {
	if err := r.sendStatus(conn); err != nil {
		r.logger.Warn("last status update failed", "slot", r.cfg.Slot, "error", err)
	}
}
