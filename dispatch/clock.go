package dispatch

import "time"

// Clock is the time source of the delivery policy: retry waits, probe and
// parked schedules, and the disable rule's "no success for" duration. The
// dispatcher uses the system clock; tests drive a fake one.
type Clock interface {
	Now() time.Time
	// NewTimer returns a stopped timer when d < 0, else one that fires
	// after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the dispatcher uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer {
	if d < 0 {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return systemTimer{t}
	}
	return systemTimer{time.NewTimer(d)}
}

type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time   { return s.t.C }
func (s systemTimer) Stop() bool            { return s.t.Stop() }
func (s systemTimer) Reset(d time.Duration) { s.t.Reset(d) }
