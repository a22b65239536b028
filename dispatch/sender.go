package dispatch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/walhook/walhook/config"
)

// Response bodies are read up to this many bytes for the delivery log, and
// drained up to drainLimit so the connection can be reused; a larger body
// closes the connection instead.
const (
	excerptLimit = 512
	drainLimit   = 64 << 10
)

// ErrBlockedAddress is returned (wrapped) when the SSRF guard refuses to dial.
var ErrBlockedAddress = errors.New("address refused by the private-network guard")

// Connection settings of the delivery client.
const (
	dialTimeout = 10 * time.Second
	// idleTimeout is how long a keep-alive connection may wait unused
	// before walhook closes it: below the 5 s after which Node.js and
	// Apache, typical WooCommerce receivers, close theirs, so a delivery
	// rarely meets a connection its receiver is closing.
	idleTimeout = 4 * time.Second
	// headerLimit bounds a response's header block.
	headerLimit = 16 << 10
)

// header is one request header, its name spelt as it goes on the wire.
type header struct{ name, value string }

// Client sends deliveries: HTTP/1.1 POSTs over keep-alive connections, no
// redirects followed, TLS verified, and a dialer that refuses the addresses
// config.RefusedAddress names (loopback, private, link-local, multicast,
// reserved and other special-purpose ranges) unless
// delivery.allow_private_networks is set or the address is inside one of
// delivery.allow_cidrs. The check runs on the resolved
// address at dial time, so a host name that resolves to 127.0.0.1 is
// refused too.
//
// It is built on github.com/valyala/fasthttp's client, which spends about
// half the CPU per request of net/http's transport (see the README's
// benchmark section). That client has no goroutine watching idle
// connections as net/http's has, so a kept-alive connection is looked at
// before a request is written on it (trackedConn.Write): one its receiver
// closed while it waited in the pool is dropped unwritten and the request
// goes on another (reuseTransport). Connections idle for idleTimeout are
// closed.
type Client struct {
	fc    *fasthttp.Client
	ctx   context.Context // ended by Abort: dials in progress stop
	abort context.CancelFunc
	conns connSet
}

// NewClient returns the client every delivery shares, set up from the
// delivery settings: Concurrency sizes the connections kept per host,
// Timeout bounds a TLS handshake as it bounds an attempt, and
// AllowPrivateNetworks and AllowCIDRs are the dialer's policy.
func NewClient(d config.Delivery) *Client {
	return newClient(d, nil)
}

// newClient is NewClient resolving names with resolver (nil: the default
// resolver).
func newClient(d config.Delivery, resolver *net.Resolver) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{ctx: ctx, abort: cancel, conns: connSet{m: make(map[*trackedConn]struct{})}}
	dialer := &net.Dialer{
		Timeout:   dialTimeout,
		KeepAlive: 30 * time.Second,
		Control:   guard(d.AllowPrivateNetworks, d.AllowCIDRs),
		Resolver:  resolver,
	}
	// Webhooks often share a host: room for every lane of many webhooks.
	maxConns := max(1024, d.Concurrency*64)
	c.fc = &fasthttp.Client{
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			return c.dial(dialer, addr, timeout)
		},
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		// The TLS handshake runs when a connection is dialled, within this
		// (without it, it would run inside the first write, with no
		// deadline but the write's). A request's write is bounded by its
		// attempt's timeout anyway.
		WriteTimeout: d.Timeout,
		// Errors quote no part of a malformed response (it may carry
		// cookies) into the delivery log.
		ConfigureClient: func(hc *fasthttp.HostClient) error {
			hc.SecureErrorLogMessage = true
			return nil
		},
		MaxConnsPerHost:     maxConns,
		MaxConnWaitTimeout:  time.Minute, // bounded by each attempt's timeout
		MaxIdleConnDuration: idleTimeout,
		ConnPoolStrategy:    fasthttp.LIFO, // the busiest connections stay warm; the rest go idle
		ReadBufferSize:      headerLimit,
		Transport:           reuseTransport{},
		// reuseTransport allows a retry only for a request found a closed
		// connection before anything was written (errIdleClosed); each such
		// retry takes one closed connection out of the pool, so retries end
		// when the pool holds none.
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, true },
		MaxIdemponentCallAttempts: maxConns + 1,
		// The URL's path goes out as configured. Request header names go
		// out as attempt spells them (X-WC-Webhook-…): post disables their
		// normalizing per request, and response header names stay
		// normalized, so Retry-After is found however it is spelt.
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
		// Only an excerpt of a response is read (see post).
		StreamResponseBody: true,
	}
	return c
}

// reuseTransport is fasthttp's transport, sending a request again only
// when nothing of it was written: the kept-alive connection it was given
// had been closed by its receiver (errIdleClosed). Any other failure is
// the attempt's result, as with net/http, since the receiver may have
// read the request.
type reuseTransport struct{}

func (reuseTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	retry, err := fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
	return retry && errors.Is(err, errIdleClosed), err
}

// errIdleClosed is a kept-alive connection found closed by its receiver,
// or carrying bytes nobody asked for, before a request was written on it.
var errIdleClosed = errors.New("kept-alive connection closed by the receiver")

// dial opens a connection for the client, within timeout (none: a
// request that waited for a free connection) and dialTimeout. Connections
// are tracked so that Abort can close them.
func (c *Client) dial(dialer *net.Dialer, addr string, timeout time.Duration) (net.Conn, error) {
	if c.ctx.Err() != nil {
		return nil, errClientClosed
	}
	if timeout <= 0 || timeout > dialTimeout {
		timeout = dialTimeout
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.conns.add(conn)
}

// Abort closes every connection, idle or carrying a request, and refuses
// new ones: requests in flight fail at once. The dispatcher calls it when
// its work ends (its shutdown grace has run out, or Run returns). The
// fasthttp client's own cleaner goroutines end within idleTimeout once
// it holds no connection.
func (c *Client) Abort() {
	c.abort()
	c.conns.closeAll()
}

var errClientClosed = errors.New("delivery client shut down")

// connSet is the client's open connections.
type connSet struct {
	mu     sync.Mutex
	m      map[*trackedConn]struct{}
	closed bool
}

func (s *connSet) add(conn net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: conn, set: s}
	tc.local = &connAddr{Addr: conn.LocalAddr(), conn: tc}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		return nil, errClientClosed
	}
	s.m[tc] = struct{}{}
	return tc, nil
}

func (s *connSet) remove(tc *trackedConn) {
	s.mu.Lock()
	delete(s.m, tc)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.m))
	for tc := range s.m {
		conns = append(conns, tc)
	}
	s.mu.Unlock()
	for _, tc := range conns {
		tc.Close()
	}
}

// trackedConn is a connection of the client's connSet; closing it takes
// it out.
type trackedConn struct {
	net.Conn
	set   *connSet
	local *connAddr
	// kept is set by post when a response has been read on the connection
	// and it may go back to the pool: its next write starts a request on a
	// kept-alive connection.
	kept atomic.Bool
}

// Write writes p. The first write of a request on a kept-alive connection
// first checks, without blocking, that the receiver has not closed it
// while it waited in the pool; if it has, nothing is written and the
// error is errIdleClosed.
//
// Over TLS the check sees the socket under the TLS layer: a receiver that
// sends a record after its response (a late session ticket) makes the
// connection look closed, which costs a new connection, not a delivery.
func (tc *trackedConn) Write(p []byte) (int, error) {
	if tc.kept.CompareAndSwap(true, false) && !idleOpen(tc.Conn) {
		return 0, errIdleClosed
	}
	return tc.Conn.Write(p)
}

// LocalAddr returns the connection's local address, through which
// markKept finds the connection a response came on.
func (tc *trackedConn) LocalAddr() net.Addr { return tc.local }

// connAddr is a trackedConn's local address.
type connAddr struct {
	net.Addr
	conn *trackedConn
}

func (tc *trackedConn) Close() error {
	tc.set.remove(tc)
	return tc.Conn.Close()
}

// excerptBufs holds the buffers response excerpts are read into.
var excerptBufs = sync.Pool{New: func() any { return new([excerptLimit]byte) }}

// guard returns the dialer's Control hook, which refuses to connect to an
// address the policy refuses. Its errors name the address, for the
// delivery log.
func guard(allowPrivate bool, allow []netip.Prefix) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot parse %q", ErrBlockedAddress, address)
		}
		ip := ap.Addr().Unmap()
		if reason := config.RefusedAddress(ip, false, allow); reason != "" {
			return fmt.Errorf("%w: %s is %s (set delivery.allow_private_networks or list it in delivery.allow_cidrs)", ErrBlockedAddress, ip, reason)
		}
		return nil
	}
}

// result is the outcome of one HTTP attempt.
type result struct {
	code       int           // HTTP status; 0 when no response arrived
	err        error         // transport error, or nil
	retryAfter time.Duration // from Retry-After on 429/503, 0 if absent
	excerpt    string        // start of the response body, for the log
	duration   time.Duration
}

// ok reports WooCommerce's success rule: any 2xx, 301 or 302.
func (r result) ok() bool {
	return r.err == nil && (r.code >= 200 && r.code < 300 || r.code == 301 || r.code == 302)
}

// permanent reports a failure that a quick retry will not cure.
func (r result) permanent() bool {
	return r.err == nil && r.code >= 400 && r.code < 500 && r.code != 408 && r.code != 425 && r.code != 429
}

// describe returns a short text for logs and the state schema.
func (r result) describe() string {
	if r.err != nil {
		return r.err.Error()
	}
	if r.ok() {
		return ""
	}
	return "HTTP " + strconv.Itoa(r.code)
}

// codeClasses are the metric labels of responses, by the status's first
// digit.
var codeClasses = [...]string{2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

// codeClass returns the metric label of the response: 2xx…5xx, or error
// (no response, or a status outside 200–599).
func (r result) codeClass() string {
	if r.err != nil || r.code < 200 || r.code > 599 {
		return "error"
	}
	return codeClasses[r.code/100]
}

// post sends one request and reads a bounded part of the response.
// header lists the request's headers; Host and Content-Length are added.
// timeout bounds the whole attempt, dial and TLS handshake included. A
// ctx already ended fails the attempt unsent; a request in flight is cut
// by Client.Abort, not by ctx.
func post(ctx context.Context, c *Client, timeout time.Duration, rawURL string, header []header, body []byte, retryAfterCap time.Duration) result {
	start := time.Now()
	if ctx.Err() != nil {
		return result{err: errClientClosed}
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.DisableNormalizing()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(rawURL)
	for _, f := range header {
		req.Header.Set(f.name, f.value)
	}
	req.SetBodyRaw(body)
	if err := c.fc.DoTimeout(req, resp, timeout); err != nil {
		return result{err: cleanError(err), duration: time.Since(start)}
	}
	r := result{code: resp.StatusCode()}
	// A body cut off (the connection closed before Content-Length bytes or
	// the last chunk, or the attempt timed out while reading it) makes the
	// attempt a failure whatever the status said: the receiver may not have
	// finished with the delivery. A body longer than what is read here is
	// not read to its end, and that is no failure: the connection is
	// closed instead of reused.
	stream := resp.BodyStream()
	var err error
	if stream != nil {
		buf := excerptBufs.Get().(*[excerptLimit]byte)
		var n int
		n, err = readFull(stream, buf[:])
		if n > 0 {
			r.excerpt = strings.ToValidUTF8(string(buf[:n]), "\uFFFD")
		}
		excerptBufs.Put(buf)
		if err == nil {
			// The excerpt filled the buffer: drain the rest, up to drainLimit.
			_, err = io.Copy(io.Discard, io.LimitReader(stream, drainLimit))
		}
		if err == io.EOF {
			err = nil
		}
		markKept(resp)
		_ = resp.CloseBodyStream()
	} else {
		// No stream: the client read the response whole and has already
		// put the connection back.
		markKept(resp)
		if b := resp.Body(); len(b) > 0 {
			r.excerpt = strings.ToValidUTF8(string(b[:min(len(b), excerptLimit)]), "\uFFFD")
		}
	}
	if err != nil {
		r.err = fmt.Errorf("HTTP %d with a response body cut off: %w", r.code, cleanError(err))
	}
	if r.code == fasthttp.StatusTooManyRequests || r.code == fasthttp.StatusServiceUnavailable {
		r.retryAfter = parseRetryAfter(string(resp.Header.Peek("Retry-After")), time.Now(), retryAfterCap)
	}
	r.duration = time.Since(start)
	return r
}

// markKept marks the connection resp came on as one whose next request
// goes on a kept-alive connection (see trackedConn.Write). It is called
// before the response's body stream is closed, which hands the
// connection back to the pool; a connection that is closed instead is
// not written on again.
func markKept(resp *fasthttp.Response) {
	if a, ok := resp.LocalAddr().(*connAddr); ok {
		a.conn.kept.Store(true)
	}
}

// readFull reads from r into buf until buf is full (nil error), r ends
// (io.EOF, with what was read) or fails. Unlike io.ReadFull it keeps a
// body that ended (io.EOF) apart from one cut off (the response body's own
// io.ErrUnexpectedEOF), which io.ReadFull reports alike.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// cleanError makes a client error fit for the delivery log, which names
// a redacted URL already: timeouts read "timed out", and the rest is the
// error's own text.
func cleanError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return errors.New("timed out")
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return errors.New("connection closed before a response")
	case errors.Is(err, fasthttp.ErrSmallReadBuffer), errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		// fasthttp's message quotes the headers; the log needs no copy.
		return fmt.Errorf("response headers over %d KiB", headerLimit>>10)
	}
	return err
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date,
// capped at limit; 0 when absent or unparsable.
func parseRetryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(limit/time.Second) {
			return limit
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	if d < 0 {
		return 0
	}
	return min(d, limit)
}

// redactURL removes credentials and the query from a URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.String()
}

// CheckDestination applies the private-network policy to a delivery URL
// ahead of any delivery (the management API uses it to refuse a webhook at
// creation): the URL must be absolute http or https with a host and a port
// from 1 to 65535, and every address the host resolves to must be allowed.
// Deliveries are checked again when they dial, so a name that changes its
// answers later is still caught.
//
// Its errors are meant for API clients: they never name the addresses a
// host name resolves to nor quote the resolver's answer, so that the API
// cannot be used to map the network walhook runs in.
func CheckDestination(ctx context.Context, rawURL string, allowPrivate bool, allow []netip.Prefix) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return errors.New("the delivery URL must be an absolute http:// or https:// URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("the delivery URL's port must be from 1 to 65535")
		}
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if reason := config.RefusedAddress(ip, false, allow); reason != "" {
			return fmt.Errorf("%w: the delivery URL's host is %s", ErrBlockedAddress, reason)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return errors.New("the delivery URL's host name cannot be resolved")
	}
	for _, ip := range ips {
		if config.RefusedAddress(ip, false, allow) != "" {
			return fmt.Errorf("%w: the delivery URL's host name resolves to an address deliveries may not reach", ErrBlockedAddress)
		}
	}
	return nil
}
