package dispatch

import (
	"bytes"
	"context"
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
	"syscall"
	"time"

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

// NewClient returns the HTTP client every delivery shares: keep-alive
// connections enough for every lane of every webhook (webhooks often share
// a host, and a connection closed for want of idle room is re-dialled on
// the next delivery), no redirects followed, TLS verified, and a dialer
// that refuses the addresses config.RefusedAddress names (loopback,
// private, link-local, multicast, reserved and other special-purpose
// ranges) unless allowPrivate is set or the address is inside one of
// allow. The check runs on the resolved address at dial time, so a host
// name that resolves to 127.0.0.1 is refused too.
func NewClient(concurrency int, allowPrivate bool, allow []netip.Prefix) *http.Client {
	return newClient(concurrency, allowPrivate, allow, nil)
}

// newClient is NewClient resolving names with resolver (nil: the default
// resolver).
func newClient(concurrency int, allowPrivate bool, allow []netip.Prefix, resolver *net.Resolver) *http.Client {
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   guard(allowPrivate, allow),
		Resolver:  resolver,
	}
	transport := &deliveryTransport{&http.Transport{
		Proxy:                 nil, // deliveries go where the webhook says, not through an environment proxy
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no limit across hosts
		MaxIdleConnsPerHost:   max(1024, concurrency*64),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // bounded by the per-attempt context
		// Only an excerpt of a response is read, for the log: asking for
		// gzip would cost a header map per request and decompression.
		DisableCompression: true,
	}}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// deliveryTransport is the transport of a client made by NewClient. Such a
// client follows no redirect and has no cookie jar: post sends through its
// transport directly (see roundTrip).
type deliveryTransport struct{ *http.Transport }

// roundTrip sends req with client. A client made by NewClient (no cookie
// jar, no timeout of its own, redirects never followed) gives the request
// to its transport directly, as Client.Do would, without the copy of the
// headers Do makes for redirects; the credentials of a URL's user info go
// as basic authentication, as Do sends them. Any other client goes
// through Do.
func roundTrip(client *http.Client, req *http.Request) (*http.Response, error) {
	t, ok := client.Transport.(*deliveryTransport)
	if !ok || client.Jar != nil || client.Timeout != 0 {
		return client.Do(req)
	}
	if u := req.URL.User; u != nil && len(req.Header["Authorization"]) == 0 {
		password, _ := u.Password()
		req.SetBasicAuth(u.Username(), password)
	}
	return t.RoundTrip(req)
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
func post(ctx context.Context, client *http.Client, timeout time.Duration, rawURL string, header http.Header, body []byte, retryAfterCap time.Duration) result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return result{err: fmt.Errorf("build request: %w", err), duration: time.Since(start)}
	}
	req.Header = header
	resp, err := roundTrip(client, req)
	if err != nil {
		return result{err: cleanError(err), duration: time.Since(start)}
	}
	r := result{code: resp.StatusCode}
	// A body cut off (the connection closed before Content-Length bytes or
	// the last chunk, or the attempt timed out while reading it) makes the
	// attempt a failure whatever the status said: the receiver may not have
	// finished with the delivery. A body longer than what is read here is
	// not read to its end, and that is no failure.
	buf := excerptBufs.Get().(*[excerptLimit]byte)
	n, err := readFull(resp.Body, buf[:])
	if n > 0 {
		r.excerpt = strings.ToValidUTF8(string(buf[:n]), "\uFFFD")
	}
	excerptBufs.Put(buf)
	if err == nil {
		// The excerpt filled the buffer: drain the rest, up to drainLimit.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	} else if err == io.EOF {
		err = nil
	}
	resp.Body.Close()
	if err != nil {
		r.err = fmt.Errorf("HTTP %d with a response body cut off: %w", r.code, cleanError(err))
	}

	if r.code == http.StatusTooManyRequests || r.code == http.StatusServiceUnavailable {
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), retryAfterCap)
	}
	r.duration = time.Since(start)
	return r
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

// cleanError strips the URL from a client error: it may carry credentials
// or secrets in its query, and the log line names a redacted URL already.
func cleanError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out")
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
