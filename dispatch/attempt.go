package dispatch

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// Header names as WooCommerce spells them on the wire (the client sends
// names as they are given, not in Go's canonical form X-Wc-…).
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

// attempt sends one request and writes its delivery log line. scratch is
// the caller's to reuse: it is emptied and filled here, and the client is
// done with it when the attempt returns.
func (h *hook) attempt(ctx context.Context, scratch *[]header, def *hookDef, sg *signer, ev *Event, id string, n int) result {
	body := ev.Payload()
	topic := def.topic
	hs := append((*scratch)[:0],
		header{"Content-Type", "application/json"},
		header{"User-Agent", h.d.userAgent},
		header{headerSource, h.d.source},
	)
	if ev.Topic == def.Topic {
		hs = append(hs, header{headerResource, def.Topic.Resource}, header{headerEvent, def.Topic.Event})
	} else {
		topic = ev.Topic.String()
		hs = append(hs, header{headerResource, ev.Topic.Resource}, header{headerEvent, ev.Topic.Event})
	}
	hs = append(hs,
		header{headerTopic, topic},
		header{headerSignature, sg.WooCommerce(body)},
		header{headerID, def.idText},
		header{headerDelivery, id},
		header{headerDeliveryWC, id},
	)
	if def.Signature.StandardWebhooks() {
		ts := h.d.clock.Now().Unix()
		hs = append(hs,
			header{"Webhook-Id", id},
			header{"Webhook-Timestamp", strconv.FormatInt(ts, 10)},
			header{"Webhook-Signature", sg.StandardWebhooks(id, ts, body)},
		)
	}
	*scratch = hs
	m := h.d.opts.Metrics
	m.InFlight.Inc()
	r := post(ctx, h.d.client, h.d.opts.Delivery.Timeout, def.DeliveryURL, hs, body, h.d.opts.Delivery.Retry.RetryAfterCap)
	m.InFlight.Dec()
	h.m.duration.Observe(r.duration.Seconds())
	h.m.attempts[r.codeClass()].Inc()
	h.logAttempt(ctx, def, topic, id, n, r)
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
