// Package receiver is a webhook receiver for tests, the demo and the bench:
// it verifies WooCommerce signatures, records every delivery and ping, and
// can be told to fail.
package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Delivery is one request the receiver accepted or refused.
type Delivery struct {
	WebhookID   int64
	Topic       string
	Resource    string
	Event       string
	DeliveryID  string
	Body        []byte
	Header      http.Header
	SignatureOK bool
	Status      int // what the receiver answered
	At          time.Time
}

// Ping is an activation ping (form body webhook_id=<id>).
type Ping struct {
	WebhookID string
	Header    http.Header
	Status    int
}

// Receiver is an http.Handler recording deliveries. Its zero value is not
// usable; call New.
type Receiver struct {
	mu         sync.Mutex
	secrets    map[int64][]byte
	deliveries []Delivery
	pings      []Ping
	respond    func(d *Delivery) (status int, header http.Header)
	notify     chan struct{}
}

// New returns a receiver that verifies deliveries of each webhook id with
// its secret and answers 200.
func New(secrets map[int64]string) *Receiver {
	r := &Receiver{secrets: make(map[int64][]byte), notify: make(chan struct{}, 1)}
	for id, s := range secrets {
		r.secrets[id] = []byte(s)
	}
	return r
}

// SetSecret sets the secret of a webhook id.
func (r *Receiver) SetSecret(id int64, secret string) {
	r.mu.Lock()
	r.secrets[id] = []byte(secret)
	r.mu.Unlock()
}

// Respond sets how the receiver answers deliveries (not pings); nil
// answers 200. f runs with the receiver's lock held and must not call it.
func (r *Receiver) Respond(f func(d *Delivery) (status int, header http.Header)) {
	r.mu.Lock()
	r.respond = f
	r.mu.Unlock()
}

// ServeHTTP records the request and answers it.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if req.Header.Get("X-WC-Webhook-Topic") == "" && req.Header.Get("Webhook-Id") == "" {
		if err := req.ParseForm(); err == nil || len(body) > 0 {
			r.mu.Lock()
			p := Ping{WebhookID: parseForm(string(body)), Header: req.Header.Clone(), Status: http.StatusOK}
			r.pings = append(r.pings, p)
			r.mu.Unlock()
			r.signal()
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	id, _ := strconv.ParseInt(req.Header.Get("X-WC-Webhook-ID"), 10, 64)
	d := Delivery{
		WebhookID:  id,
		Topic:      req.Header.Get("X-WC-Webhook-Topic"),
		Resource:   req.Header.Get("X-WC-Webhook-Resource"),
		Event:      req.Header.Get("X-WC-Webhook-Event"),
		DeliveryID: req.Header.Get("X-WC-Webhook-Delivery-ID"),
		Body:       body,
		Header:     req.Header.Clone(),
		At:         time.Now(),
		Status:     http.StatusOK,
	}
	if d.DeliveryID == "" {
		d.DeliveryID = req.Header.Get("Webhook-Id")
	}
	r.mu.Lock()
	if secret, ok := r.secrets[id]; ok {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		d.SignatureOK = hmac.Equal([]byte(want), []byte(req.Header.Get("X-WC-Webhook-Signature")))
	}
	var header http.Header
	if r.respond != nil {
		d.Status, header = r.respond(&d)
	}
	r.deliveries = append(r.deliveries, d)
	r.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(d.Status)
	r.signal()
}

func parseForm(body string) string {
	const prefix = "webhook_id="
	if len(body) > len(prefix) && body[:len(prefix)] == prefix {
		return body[len(prefix):]
	}
	return ""
}

func (r *Receiver) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Deliveries returns a copy of every delivery so far, in arrival order.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// Accepted returns the deliveries answered with a success status.
func (r *Receiver) Accepted() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Delivery
	for _, d := range r.deliveries {
		if d.Status >= 200 && d.Status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// Pings returns a copy of every ping so far.
func (r *Receiver) Pings() []Ping {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Ping(nil), r.pings...)
}

// Wait blocks until cond holds for the receiver's state and reports
// whether it held. It gives up only when no request (delivery or ping)
// has reached the receiver for idle: a slow machine makes the wait longer,
// never failed, while a stalled sender is reported after idle. As a last
// bound it gives up after maxIdleSpans times idle even while requests keep
// arriving (a sender retrying a failure forever). cond runs without the
// lock held.
func (r *Receiver) Wait(idle time.Duration, cond func(*Receiver) bool) bool {
	overall := time.NewTimer(maxIdleSpans * idle)
	defer overall.Stop()
	quiet := time.NewTimer(idle)
	defer quiet.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seen := r.requests()
	for {
		if cond(r) {
			return true
		}
		select {
		case <-overall.C:
			return cond(r)
		case <-quiet.C:
			if r.requests() == seen {
				return cond(r)
			}
		case <-r.notify:
		case <-tick.C:
		}
		if n := r.requests(); n != seen {
			seen = n
			quiet.Reset(idle) // timers of Go 1.23+ drop a stale expiry on Reset
		}
	}
}

// maxIdleSpans bounds Wait at this many idle periods in all.
const maxIdleSpans = 5

// requests returns how many requests the receiver has seen.
func (r *Receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.deliveries) + len(r.pings)
}
