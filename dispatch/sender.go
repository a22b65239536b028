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
	"syscall"
	"time"
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
// the next delivery), no redirects followed, TLS
// verified, and a dialer that refuses loopback, private, link-local,
// multicast and unspecified addresses unless allowPrivate is set or the
// address is inside one of allow. The check runs on the resolved address
// at dial time, so a host name that resolves to 127.0.0.1 is refused too.
func NewClient(concurrency int, allowPrivate bool, allow []netip.Prefix) *http.Client {
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   guard(allowPrivate, allow),
	}
	transport := &http.Transport{
		Proxy:                 nil, // deliveries go where the webhook says, not through an environment proxy
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no limit across hosts
		MaxIdleConnsPerHost:   max(1024, concurrency*64),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // bounded by the per-attempt context
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

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
		for _, p := range allow {
			if p.Contains(ip) {
				return nil
			}
		}
		if reason := blockedReason(ip); reason != "" {
			return fmt.Errorf("%w: %s is a %s address (set delivery.allow_private_networks or list it in delivery.allow_cidrs)", ErrBlockedAddress, ip, reason)
		}
		return nil
	}
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func blockedReason(ip netip.Addr) string {
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate(), cgnat.Contains(ip):
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	case ip.IsUnspecified():
		return "unspecified"
	}
	return ""
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

// codeClass returns the metric label of the response: 2xx…5xx or error.
func (r result) codeClass() string {
	if r.err != nil || r.code < 100 || r.code > 599 {
		return "error"
	}
	return strconv.Itoa(r.code/100) + "xx"
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
	resp, err := client.Do(req)
	if err != nil {
		return result{err: cleanError(err), duration: time.Since(start)}
	}
	r := result{code: resp.StatusCode}
	var buf [excerptLimit]byte
	n, _ := io.ReadFull(resp.Body, buf[:])
	r.excerpt = strings.ToValidUTF8(string(buf[:n]), "\uFFFD")
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	resp.Body.Close()
	if r.code == http.StatusTooManyRequests || r.code == http.StatusServiceUnavailable {
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), retryAfterCap)
	}
	r.duration = time.Since(start)
	return r
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
// creation): the URL must be absolute http or https with a host, and every
// address the host resolves to must be allowed. Deliveries are checked
// again when they dial, so a name that changes its answers later is still
// caught.
func CheckDestination(ctx context.Context, rawURL string, allowPrivate bool, allow []netip.Prefix) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the delivery URL must be an absolute http:// or https:// URL")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", host, err)
		}
		addrs = ips
	}
	check := guard(false, allow)
	for _, ip := range addrs {
		if err := check("tcp", netip.AddrPortFrom(ip, 443).String(), nil); err != nil {
			return err
		}
	}
	return nil
}
