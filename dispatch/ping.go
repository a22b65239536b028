package dispatch

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// ping posts webhook_id=<id> form-encoded, as WooCommerce does when a
// webhook becomes active; only a 200 clears the pending ping. It never
// changes the status or the failure count.
func (h *hook) ping(ctx context.Context) {
	if !h.pinging.CompareAndSwap(false, true) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.pinging.Store(false)
		def := h.def.Load()
		hs := []header{
			{"Content-Type", "application/x-www-form-urlencoded"},
			{"User-Agent", h.d.userAgent},
		}
		body := []byte(url.Values{"webhook_id": {strconv.FormatInt(def.ID, 10)}}.Encode())
		r := post(ctx, h.d.client, h.d.opts.Delivery.Timeout, def.DeliveryURL, hs, body, 0)
		ok := r.err == nil && r.code == http.StatusOK
		outcome, result := "success", "HTTP 200"
		if !ok {
			outcome, result = "failed", r.describe()
			if r.err == nil {
				result = "HTTP " + strconv.Itoa(r.code)
			}
			h.d.log.Warn("webhook ping failed", "webhook_id", def.ID, "url", def.logURL, "result", result)
		} else {
			h.d.log.Info("webhook ping delivered", "webhook_id", def.ID, "url", def.logURL)
		}
		h.d.opts.Metrics.Pings.WithLabelValues(h.idLabel, outcome).Inc()
		if err := h.d.opts.Store.RecordPing(ctx, def.ID, ok, result); err != nil {
			h.d.log.Warn("record ping", "webhook_id", def.ID, "error", err)
		}
	}()
}
