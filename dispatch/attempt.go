package dispatch

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Header names as WooCommerce spells them on the wire. They are set as map
// keys, not through Header.Set, so Go's canonical form (X-Wc-…) does not
// replace them.
const (
	headerSource     = "X-WC-Webhook-Source"
	headerTopic      = "X-WC-Webhook-Topic"
	headerResource   = "X-WC-Webhook-Resource"
	headerEvent      = "X-WC-Webhook-Event"
	headerSignature  = "X-WC-Webhook-Signature"
	headerID         = "X-WC-Webhook-ID"
	headerDelivery   = "X-WC-Webhook-Delivery-ID"
	headerDeliveryWC = "X-WC-Delivery-ID"
)

var contentJSON = []string{"application/json"}

// attempt sends one request and writes its delivery log line.
// header is the caller's to reuse: it is cleared and filled here, and the
// transport is done with it when the attempt returns.
func (h *hook) attempt(ctx context.Context, header http.Header, def *hookDef, sg *signer, ev *Event, id string, n int) result {
	clear(header)
	header["Content-Type"] = contentJSON
	header["User-Agent"] = h.d.userAgent
	header[headerSource] = h.d.source
	topic := def.topic
	if ev.Topic == def.Topic {
		header[headerResource], header[headerEvent] = def.resource, def.event
	} else {
		topic = []string{ev.Topic.String()}
		header[headerResource] = []string{ev.Topic.Resource}
		header[headerEvent] = []string{ev.Topic.Event}
	}
	header[headerTopic] = topic
	body := ev.Payload()
	header[headerSignature] = []string{sg.WooCommerce(body)}
	header[headerID] = def.idText
	header[headerDelivery] = []string{id}
	header[headerDeliveryWC] = header[headerDelivery]
	if def.Signature.StandardWebhooks() {
		ts := h.d.clock.Now().Unix()
		header["Webhook-Id"] = []string{id}
		header["Webhook-Timestamp"] = []string{strconv.FormatInt(ts, 10)}
		header["Webhook-Signature"] = []string{sg.StandardWebhooks(id, ts, body)}
	}
	m := h.d.opts.Metrics
	m.InFlight.Inc()
	r := post(ctx, h.d.client, h.d.opts.Delivery.Timeout, def.DeliveryURL, header, body, h.d.opts.Delivery.Retry.RetryAfterCap)
	m.InFlight.Dec()
	h.m.duration.Observe(r.duration.Seconds())
	h.m.attempts[r.codeClass()].Inc()
	h.logAttempt(ctx, def, topic[0], id, n, r)
	return r
}

// logAttempt writes the attempt's delivery log line: info when it
// succeeded, warn when not. The webhook's id and URL come rendered with
// the logger; the record is handed to the handler directly (it names no
// source location, so none is looked up).
func (h *hook) logAttempt(ctx context.Context, def *hookDef, topic, id string, n int, r result) {
	level := slog.LevelInfo
	if !r.ok() {
		level = slog.LevelWarn
	}
	log := def.deliveryLog
	if !log.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(time.Now(), level, "webhook delivery", 0)
	rec.AddAttrs(
		slog.String("topic", topic),
		slog.String("delivery_id", id),
		slog.Int("attempt", n),
		slog.Float64("duration_seconds", r.duration.Seconds()),
		slog.Int("response_code", r.code),
	)
	if r.err != nil {
		rec.AddAttrs(slog.String("error", r.err.Error()))
	}
	if r.excerpt != "" {
		rec.AddAttrs(slog.String("response_body", r.excerpt))
	}
	_ = log.Handler().Handle(ctx, rec)
}
