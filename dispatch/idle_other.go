//go:build !unix

package dispatch

import "net"

// idleOpen reports an idle connection as open: on this system it is not
// checked, and a delivery meeting a connection its receiver has closed
// fails its attempt and is retried.
func idleOpen(net.Conn) bool { return true }
