package dispatch

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/config"
)

// testDelivery is the delivery settings of the client tests: private
// networks allowed, since receivers listen on 127.0.0.1.
var testDelivery = config.Delivery{Concurrency: 1, Timeout: 10 * time.Second, AllowPrivateNetworks: true}

// rawReceiver is a TCP server on 127.0.0.1 that reads each request and
// answers with the bytes respond writes, then closes the connection.
func rawReceiver(t *testing.T, respond func(w *bufio.Writer, stop <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				bw := bufio.NewWriter(conn)
				respond(bw, stop)
				_ = bw.Flush()
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook"
}

// TestTruncatedBodyIsAFailure pins a miscount: a 200 status line whose
// body was cut off by the connection closing was counted as delivered.
// The receiver may not have finished; the attempt is a failure now.
func TestTruncatedBodyIsAFailure(t *testing.T) {
	tests := []struct {
		name    string
		respond func(w *bufio.Writer, stop <-chan struct{})
		ok      bool
		errHas  string
	}{
		{
			name: "whole body",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprint(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			},
			ok: true,
		},
		{
			name: "no body",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprint(w, "HTTP/1.1 204 No Content\r\n\r\n")
			},
			ok: true,
		},
		{
			name: "body longer than what is read",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				n := excerptLimit + drainLimit + 1<<20
				fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", n))
			},
			ok: true,
		},
		{
			name: "Content-Length not reached",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprint(w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			},
			errHas: "HTTP 200 with a response body cut off: unexpected EOF",
		},
		{
			name: "Content-Length not reached after the excerpt",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n%s", strings.Repeat("x", 3000))
			},
			errHas: "cut off",
		},
		{
			name: "last chunk missing",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprint(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			},
			errHas: "cut off",
		},
		{
			name: "headers over the limit",
			respond: func(w *bufio.Writer, _ <-chan struct{}) {
				fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("x", headerLimit))
			},
			errHas: "response headers over 16 KiB",
		},
		{
			name: "body stalls past the timeout",
			respond: func(w *bufio.Writer, stop <-chan struct{}) {
				fmt.Fprint(w, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
				_ = w.Flush()
				<-stop
			},
			errHas: "cut off: timed out",
		},
	}
	client := NewClient(testDelivery)
	defer client.Abort()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := rawReceiver(t, tc.respond)
			r := post(t.Context(), client, time.Second, url, []header{{"Content-Type", "application/json"}}, []byte(`{"id":1}`), 0)
			if r.ok() != tc.ok {
				t.Fatalf("ok() = %v, want %v (code %d, err %v)", r.ok(), tc.ok, r.code, r.err)
			}
			if tc.errHas != "" && (r.err == nil || !strings.Contains(r.err.Error(), tc.errHas)) {
				t.Errorf("err = %v, want it to say %q", r.err, tc.errHas)
			}
			if !tc.ok && (r.codeClass() != "error" || r.permanent()) {
				t.Errorf("a cut-off body is class %s, permanent %v: want a retried error", r.codeClass(), r.permanent())
			}
		})
	}
}

// TestClosedKeepAliveConnectionIsResent pins what the client does when a
// receiver closes a keep-alive connection while it waits in the pool, as
// receivers do after their idle timeout: the next delivery finds the
// connection closed before writing on it, and goes on a new one instead of
// failing. The receiver sees each delivery once. A request the receiver
// read before closing the connection without an answer is a failure, and
// is not sent again.
func TestClosedKeepAliveConnectionIsResent(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			var requests, dropped atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if r.URL.Path == "/drop" {
					dropped.Add(1)
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				requests.Add(1)
			}))
			var conns atomic.Int64
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			client := NewClient(testDelivery)
			defer client.Abort()
			if tls {
				srv.StartTLS()
				client.fc.TLSConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			} else {
				srv.Start()
			}
			defer srv.Close()
			body := []byte(`{"id":1}`)

			const rounds = 20
			for i := range rounds {
				if r := post(t.Context(), client, 10*time.Second, srv.URL, nil, body, 0); !r.ok() {
					t.Fatalf("round %d: code %d, err %v: want a delivery", i, r.code, r.err)
				}
				// The receiver closes the idle connection the delivery used.
				srv.CloseClientConnections()
				waitPeerClosed(t, client)
			}
			if got := requests.Load(); got != rounds {
				t.Errorf("the receiver saw %d requests, want %d", got, rounds)
			}
			// Each round after the first found the closed connection, then
			// dialled: one connection per round.
			if got := conns.Load(); got != rounds {
				t.Errorf("%d connections for %d rounds, want one each", got, rounds)
			}

			// On a kept-alive connection, the receiver reads a request and
			// closes the connection without answering.
			if r := post(t.Context(), client, 10*time.Second, srv.URL, nil, body, 0); !r.ok() {
				t.Fatalf("code %d, err %v: want a delivery", r.code, r.err)
			}
			if r := post(t.Context(), client, 10*time.Second, srv.URL+"/drop", nil, body, 0); r.ok() || r.err == nil {
				t.Fatalf("closed without an answer: code %d, err %v: want a failure", r.code, r.err)
			}
			if got := dropped.Load(); got != 1 {
				t.Errorf("a request read and left unanswered was sent %d times, want once", got)
			}
		})
	}
}

// waitPeerClosed waits until every connection client holds has seen its
// receiver close it.
func waitPeerClosed(t *testing.T, client *Client) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		client.conns.mu.Lock()
		open := 0
		for tc := range client.conns.m {
			if idleOpen(tc.Conn) {
				open++
			}
		}
		client.conns.mu.Unlock()
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open two minutes after the receiver closed them", open)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTLSIsVerified pins HTTPS deliveries: a receiver whose certificate
// walhook cannot verify gets no delivery, and one it can gets the delivery
// over HTTP/1.1.
func TestTLSIsVerified(t *testing.T) {
	var proto atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
	}))
	defer srv.Close()
	body := []byte(`{"id":1}`)

	untrusting := NewClient(testDelivery)
	defer untrusting.Abort()
	r := post(t.Context(), untrusting, 10*time.Second, srv.URL, nil, body, 0)
	if r.ok() || r.err == nil || !strings.Contains(r.err.Error(), "certificate") {
		t.Fatalf("unverifiable certificate: code %d, err %v: want a certificate error", r.code, r.err)
	}
	if proto.Load() != nil {
		t.Fatal("the receiver got a request over an unverified connection")
	}

	trusting := NewClient(testDelivery)
	defer trusting.Abort()
	trusting.fc.TLSConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	if r := post(t.Context(), trusting, 10*time.Second, srv.URL, nil, body, 0); !r.ok() {
		t.Fatalf("verifiable certificate: code %d, err %v: want a delivery", r.code, r.err)
	}
	if got := proto.Load(); got != "HTTP/1.1" {
		t.Errorf("delivered over %v, want HTTP/1.1", got)
	}
}

// TestURLReachesTheReceiver pins how a delivery URL goes on the wire: its
// credentials as basic authentication (never in the Host header), its
// path and query as written.
func TestURLReachesTheReceiver(t *testing.T) {
	type seen struct{ user, pass, host, uri string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		got <- seen{user, pass, r.Host, r.RequestURI}
	}))
	defer srv.Close()
	client := NewClient(testDelivery)
	defer client.Abort()
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	r := post(t.Context(), client, 10*time.Second, "http://hook%40user:p%3Ass@"+hostPort+"/a/b%2Fc?x=1&y=%20", nil, []byte(`{}`), 0)
	if !r.ok() {
		t.Fatalf("code %d, err %v", r.code, r.err)
	}
	want := seen{"hook@user", "p:ss", hostPort, "/a/b%2Fc?x=1&y=%20"}
	if s := <-got; s != want {
		t.Errorf("the receiver saw %+v, want %+v", s, want)
	}
}

// TestRetryAfterInAnySpelling pins that Retry-After is read whatever the
// case of its name (receivers behind HTTP/2 proxies send retry-after).
func TestRetryAfterInAnySpelling(t *testing.T) {
	client := NewClient(testDelivery)
	defer client.Abort()
	for _, name := range []string{"Retry-After", "retry-after", "RETRY-AFTER"} {
		url := rawReceiver(t, func(w *bufio.Writer, _ <-chan struct{}) {
			fmt.Fprintf(w, "HTTP/1.1 503 Service Unavailable\r\n%s: 7\r\nContent-Length: 0\r\n\r\n", name)
		})
		r := post(t.Context(), client, 10*time.Second, url, nil, []byte(`{}`), time.Minute)
		if r.code != 503 || r.retryAfter != 7*time.Second {
			t.Errorf("%s: code %d, retry after %s, err %v: want 503 and 7s", name, r.code, r.retryAfter, r.err)
		}
	}
}

// TestTLSHandshakeStallTimesOut pins an attempt that never ended: a
// receiver that accepts the connection and never answers the TLS
// handshake held the lane until shutdown. The handshake is bounded by the
// delivery timeout.
func TestTLSHandshakeStallTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never answered
		}
	}()
	d := testDelivery
	d.Timeout = time.Second
	client := NewClient(d)
	defer client.Abort()
	done := make(chan result, 1)
	go func() {
		done <- post(t.Context(), client, d.Timeout, "https://"+ln.Addr().String()+"/hook", nil, []byte(`{}`), 0)
	}()
	select {
	case r := <-done:
		if r.err == nil || r.err.Error() != "timed out" {
			t.Fatalf("code %d, err %v: want timed out", r.code, r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("a stalled TLS handshake held the attempt for two minutes")
	}
}

// TestAbortCutsRequestsInFlight pins the shutdown path: when the
// dispatcher's grace has run out it aborts the client, and a request
// waiting on a receiver that never answers fails at once instead of at its
// timeout; later requests are refused.
func TestAbortCutsRequestsInFlight(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	client := NewClient(testDelivery)
	done := make(chan result, 1)
	go func() {
		done <- post(context.Background(), client, time.Hour, srv.URL, nil, []byte(`{}`), 0)
	}()
	<-arrived
	client.Abort()
	select {
	case r := <-done:
		if r.err == nil || r.err.Error() == "timed out" {
			t.Fatalf("code %d, err %v: want the request cut by Abort", r.code, r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the request was still waiting on its receiver two minutes after Abort")
	}
	if r := post(context.Background(), client, time.Hour, srv.URL, nil, []byte(`{}`), 0); !errors.Is(r.err, errClientClosed) {
		t.Fatalf("after Abort: code %d, err %v, want %v", r.code, r.err, errClientClosed)
	}
}

// dnsServer is a DNS server over UDP on 127.0.0.1 answering A and AAAA
// queries from records; other names get NXDOMAIN.
func dnsServer(t *testing.T, records map[string][]netip.Addr) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], records); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// dnsAnswer builds the response to the one-question query q (RFC 1035).
func dnsAnswer(q []byte, records map[string][]netip.Addr) []byte {
	if len(q) < 12 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++ // the root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, "."))
	addrs, known := records[name]
	var answers [][]byte
	for _, a := range addrs {
		typ, rdata := uint16(1), a.AsSlice()
		if a.Is6() {
			typ = 28
		}
		if typ != qtype {
			continue
		}
		rr := []byte{0xc0, 12} // the question's name
		rr = binary.BigEndian.AppendUint16(rr, typ)
		rr = binary.BigEndian.AppendUint16(rr, 1) // IN
		rr = binary.BigEndian.AppendUint32(rr, 60)
		rr = binary.BigEndian.AppendUint16(rr, uint16(len(rdata)))
		answers = append(answers, append(rr, rdata...))
	}
	flags := uint16(0x8180) // response, recursion desired and available
	if !known {
		flags |= 3 // NXDOMAIN
	}
	resp := append([]byte{}, q[:2]...) // the query's id
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(answers)))
	resp = append(resp, 0, 0, 0, 0)
	resp = append(resp, question...)
	for _, a := range answers {
		resp = append(resp, a...)
	}
	return resp
}

// TestGuardRefusesResolvedNames pins the SSRF ranges a host name could
// resolve to and still be dialled: NAT64 (64:ff9b::/96) and 6to4
// (2002::/16) forms of loopback, IPv4-compatible addresses, 0.0.0.0/8,
// 192.0.0.0/24, 198.18.0.0/15 and 240.0.0.0/4. Names are resolved by a
// real DNS server; the dialer refuses each address before connecting.
func TestGuardRefusesResolvedNames(t *testing.T) {
	recv := rawReceiver(t, func(w *bufio.Writer, _ <-chan struct{}) {
		fmt.Fprint(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	port := recv[strings.LastIndex(recv, ":")+1 : strings.LastIndex(recv, "/")]
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	dns := dnsServer(t, map[string][]netip.Addr{
		"allowed.test":   addrs("127.0.0.1"),
		"nat64.test":     addrs("64:ff9b::7f00:1"),
		"sixtofour.test": addrs("2002:7f00:1::1"),
		"compat.test":    addrs("::7f00:1"),
		"zero.test":      addrs("0.0.0.0"),
		"thisnet.test":   addrs("0.1.2.3"),
		"ietf.test":      addrs("192.0.0.8"),
		"bench.test":     addrs("198.18.0.1"),
		"reserved.test":  addrs("240.0.0.1"),
		"broadcast.test": addrs("255.255.255.255"),
		"private.test":   addrs("10.0.0.1"),
	})
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns)
	}}
	// 127.0.0.1 is allowed so that a refusal cannot be mistaken for a
	// name that did not resolve: allowed.test is delivered to.
	client := newClient(config.Delivery{Concurrency: 1, Timeout: 10 * time.Second, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, resolver)
	for _, name := range []string{"allowed.test", "nat64.test", "sixtofour.test", "compat.test", "zero.test", "thisnet.test",
		"ietf.test", "bench.test", "reserved.test", "broadcast.test", "private.test"} {
		t.Run(name, func(t *testing.T) {
			r := post(t.Context(), client, 5*time.Second, "http://"+name+":"+port+"/hook", nil, []byte("{}"), 0)
			if name == "allowed.test" {
				if !r.ok() {
					t.Fatalf("allowed name not delivered: code %d, err %v", r.code, r.err)
				}
				return
			}
			if r.ok() || !errors.Is(r.err, ErrBlockedAddress) {
				t.Fatalf("code %d, err %v: want a refusal by the private-network guard", r.code, r.err)
			}
		})
	}
}

// TestCheckDestinationRevealsNothing pins what the management API may
// tell a client: a host name that resolves to a refused address, or that
// does not resolve, is refused without naming the addresses or quoting the
// resolver.
func TestCheckDestinationRevealsNothing(t *testing.T) {
	tests := []struct {
		url     string
		want    string
		blocked bool
	}{
		{"http://localhost:8080/hook", "the delivery URL's host name resolves to an address deliveries may not reach", true},
		{"http://no-such-host.invalid/hook", "the delivery URL's host name cannot be resolved", false},
		{"http://[64:ff9b::7f00:1]/hook", "the delivery URL's host is a NAT64 form of a loopback address (127.0.0.0/8)", true},
		{"http://198.18.0.1/hook", "the delivery URL's host is a benchmarking address (198.18.0.0/15)", true},
		{"https://hooks.example.com:0/hook", "the delivery URL's port must be from 1 to 65535", false},
		{"https://hooks.example.com:65536/hook", "the delivery URL's port must be from 1 to 65535", false},
		{"ftp://hooks.example.com/", "the delivery URL must be an absolute http:// or https:// URL", false},
	}
	for _, tc := range tests {
		err := CheckDestination(t.Context(), tc.url, false, nil)
		if err == nil {
			t.Errorf("%s: allowed", tc.url)
			continue
		}
		msg := err.Error()
		if !strings.HasSuffix(msg, tc.want) || errors.Is(err, ErrBlockedAddress) != tc.blocked {
			t.Errorf("%s: %q, want it to end with %q (blocked %v)", tc.url, msg, tc.want, tc.blocked)
		}
		for _, leak := range []string{"127.0.0.1", "::1", "lookup", ":53", "server misbehaving", "no such host"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%s: %q reveals %q", tc.url, msg, leak)
			}
		}
	}
}
