//go:build unix

package dispatch

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// idleOpen reports whether an idle connection can carry a request: its
// receiver has neither closed nor reset it, nor sent bytes unasked. It
// peeks at the socket without blocking (one recvfrom with MSG_PEEK), as
// net/http's transport learns the same from the read it keeps pending on
// every idle connection.
func idleOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	peek := func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read, the connection is open and quiet. nil:
		// the receiver closed it (0 bytes) or sent bytes nobody asked for.
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
		return true
	}
	err = rc.Read(peek)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The previous response's read deadline has passed; the next
		// read sets its own.
		if c.SetReadDeadline(time.Time{}) != nil {
			return false
		}
		err = rc.Read(peek)
	}
	return err == nil && open
}
