package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// orderPayloadQuery is the order resource's payload_query in the
// drain-payload scenario: a WooCommerce-like order document (money as
// strings, GMT dates, the billing and shipping addresses, line items
// ordered by id). It keeps id first and bench_rev, which the receiver
// reads.
const orderPayloadQuery = `SELECT o.id, jsonb_build_object(
  'id', o.id, 'status', o.status, 'currency', o.currency, 'total', o.total::text,
  'customer_id', COALESCE(o.customer_id, 0),
  'date_created_gmt', to_char(o.date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'),
  'date_paid_gmt', to_char(o.date_paid AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'),
  'billing', o.billing - 'shipping', 'shipping', COALESCE(o.billing->'shipping', '{}'),
  'line_items', COALESCE((SELECT jsonb_agg(li ORDER BY (li->>'id')::bigint) FROM jsonb_array_elements(o.line_items) li), '[]'),
  'meta_data', '[]'::jsonb, 'bench_rev', o.bench_rev)
FROM orders o WHERE o.id = ANY($1)`

// payloadFigures reads walhook's payload query metrics for orders into r,
// with the number of order created and updated events of p.
func (r *result) payloadFigures(ctx context.Context, addr string, p plan) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	values := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{
			`walhook_payload_query_duration_seconds_sum{resource="order"}`,
			`walhook_payload_query_duration_seconds_count{resource="order"}`,
			`walhook_payload_fallback_total{resource="order"}`,
		} {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return fmt.Errorf("metric %s: %w", name, err)
				}
				values[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read metrics: %w", err)
	}
	r.PayloadQuerySeconds = values[`walhook_payload_query_duration_seconds_sum{resource="order"}`]
	r.PayloadQueries = int64(values[`walhook_payload_query_duration_seconds_count{resource="order"}`])
	r.PayloadFallbacks = int64(values[`walhook_payload_fallback_total{resource="order"}`])
	r.PayloadEvents = p.expectedPerWebhook(webhookID(orderResource, 0)) + p.expectedPerWebhook(webhookID(orderResource, 1))
	return nil
}
