package main

// The workload is a deterministic plan of transactions, so the bench knows
// every delivery it must receive without storing them.
//
// Transaction i touches one table, resource i%4 (coupon, customer, order,
// product), at step t = i/4 of that table, with ten changes on ten
// different rows (so no coalescing can merge them), 60/30/10 inserts,
// updates and deletes:
//
//	INSERT id 6t+1 … 6t+6                     -> <resource>.created, rev 0
//	UPDATE id 6(t-1)+1, 6(t-2)+1, 6(t-3)+1    -> <resource>.updated, rev 1, 2, 3
//	DELETE id 6(t-4)+1                        -> <resource>.deleted
//
// The first row of each step (its lead, id 6k+1) therefore lives through
// created, three updates that bump its bench_rev column (which is in the
// body) and deleted, spread over five transactions; the other five rows
// are only created. The first steps of a table have fewer changes because
// their older rows do not exist yet.

// resources are the four core resources, in the order of the plan.
var resources = [4]string{"coupon", "customer", "order", "product"}

// events are the three core events.
var events = [3]string{"created", "updated", "deleted"}

// changesPerTx is the number of changes of a full transaction.
const changesPerTx = 10

// rowsPerStep is the number of rows a step inserts.
const rowsPerStep = 6

// webhookCount is the number of webhooks: one per core topic.
const webhookCount = len(resources) * len(events)

// webhookID returns the id of the webhook of resource r and event e.
func webhookID(r, e int) int { return r*len(events) + e + 1 }

// resourceHookID returns the id of the <resource>.* webhook of resource r
// in the drain-resource scenario; the receiver files its deliveries under
// webhookID(r, event) by their X-WC-Webhook-Event header.
func resourceHookID(r int) int { return webhookCount + r + 1 }

// maxHookID is the highest webhook id a scenario configures.
const maxHookID = webhookCount + len(resources)

// topicOf returns the topic of webhook id wh (1-based).
func topicOf(wh int) string {
	return resources[(wh-1)/len(events)] + "." + events[(wh-1)%len(events)]
}

// orderResource is the index of order in resources.
const orderResource = 2

// plan is the workload of one scenario: transactions 0..txns-1.
type plan struct {
	txns int64
	// built marks the webhooks whose bodies a payload_query builds: they
	// hold the row's state when the query ran, not the revision of the
	// change, so their deliveries are matched by delivery id.
	built [webhookCount + 1]bool
	// perResource is set when each resource's events go to one
	// <resource>.* webhook: then a row's created, updates and deleted
	// must arrive in commit order, which analyze checks.
	perResource bool
}

// planForChanges returns the plan with about n changes.
func planForChanges(n int64) plan {
	return plan{txns: max(1, (n+changesPerTx-1)/changesPerTx)}
}

// steps returns how many steps resource r runs in the plan.
func (p plan) steps(r int) int64 {
	if p.txns <= int64(r) {
		return 0
	}
	return (p.txns - int64(r) + 3) / 4
}

// expectedPerWebhook returns how many deliveries webhook wh must receive.
func (p plan) expectedPerWebhook(wh int) int64 {
	s := p.steps((wh - 1) / len(events))
	switch (wh - 1) % len(events) {
	case 0:
		return rowsPerStep * s
	case 1:
		return max(0, s-1) + max(0, s-2) + max(0, s-3)
	default:
		return max(0, s-4)
	}
}

// expected returns the number of deliveries the plan must produce, which
// is also its number of changes.
func (p plan) expected() int64 {
	var n int64
	for wh := 1; wh <= webhookCount; wh++ {
		n += p.expectedPerWebhook(wh)
	}
	return n
}

// txOf reports whether a delivery to webhook wh of row id at revision rev
// belongs to the plan, and the transaction that made it.
func (p plan) txOf(wh int, id int64, rev int) (int64, bool) {
	if wh < 1 || wh > webhookCount || id < 1 {
		return 0, false
	}
	r := (wh - 1) / len(events)
	s := p.steps(r)
	k := (id - 1) / rowsPerStep // the step that inserted the row
	lead := (id-1)%rowsPerStep == 0
	var step int64
	switch (wh - 1) % len(events) {
	case 0:
		if rev != 0 {
			return 0, false
		}
		step = k
	case 1:
		if !lead || rev < 1 || rev > 3 {
			return 0, false
		}
		step = k + int64(rev)
	default:
		if !lead || rev != 0 {
			return 0, false
		}
		step = k + 4
	}
	if step >= s {
		return 0, false
	}
	return step*4 + int64(r), true
}

// rowSeq is the place of a delivery in its row's life: created 0, updated
// at revision rev, deleted 4.
func rowSeq(wh int, rev uint8) uint8 {
	switch (wh - 1) % len(events) {
	case 0:
		return 0
	case 1:
		return rev
	default:
		return 4
	}
}

// workloadSQL adds the revision column to the shop tables and defines
// bench_step(i), which runs transaction i of the plan (in the caller's
// transaction), and bench_load(from, to), which runs transactions
// from..to-1, committing after each.
const workloadSQL = `
ALTER TABLE coupons   ADD COLUMN bench_rev integer NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN bench_rev integer NOT NULL DEFAULT 0;
ALTER TABLE orders    ADD COLUMN bench_rev integer NOT NULL DEFAULT 0;
ALTER TABLE products  ADD COLUMN bench_rev integer NOT NULL DEFAULT 0;
-- Deleting a customer checks orders.customer_id's foreign key: without an
-- index that is a scan of every order, and a million-change load slows
-- down with the square of its size.
CREATE INDEX ON orders (customer_id);

CREATE FUNCTION bench_step(i bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	kind int := i % 4;
	t bigint := i / 4;
	x0 bigint := 6 * t;
	leads bigint[] := ARRAY[6 * (t - 1) + 1, 6 * (t - 2) + 1, 6 * (t - 3) + 1];
	gone bigint := 6 * (t - 4) + 1;
BEGIN
	IF kind = 0 THEN
		INSERT INTO coupons (id, code, amount, discount_type, date_expires)
		SELECT x, 'SPRING-' || x, 5 + x % 20, (ARRAY['percent','fixed_cart','fixed_product'])[1 + x % 3],
			now() + interval '30 days'
		FROM generate_series(x0 + 1, x0 + 6) AS x;
		UPDATE coupons SET amount = amount + 1, bench_rev = bench_rev + 1 WHERE id = ANY (leads);
		DELETE FROM coupons WHERE id = gone;
	ELSIF kind = 1 THEN
		INSERT INTO customers (id, email, first_name, last_name, password_hash, billing)
		SELECT x, 'customer' || x || '@example.com', 'John', 'Doe-' || x,
			'$P$B' || md5(x::text),
			jsonb_build_object('first_name', 'John', 'last_name', 'Doe-' || x, 'company', '',
				'address_1', x || ' Market Street', 'address_2', '', 'city', 'San Francisco',
				'state', 'CA', 'postcode', '94103', 'country', 'US',
				'email', 'customer' || x || '@example.com', 'phone', '(555) 555-' || lpad((x % 10000)::text, 4, '0'))
		FROM generate_series(x0 + 1, x0 + 6) AS x;
		UPDATE customers SET billing = jsonb_set(billing, '{phone}', to_jsonb('(555) 444-' || lpad((id % 10000)::text, 4, '0'))),
			bench_rev = bench_rev + 1 WHERE id = ANY (leads);
		DELETE FROM customers WHERE id = gone;
	ELSIF kind = 2 THEN
		INSERT INTO orders (id, status, currency, total, billing, line_items)
		SELECT x, 'pending', 'EUR', 19.99 + (x % 200),
			jsonb_build_object('first_name', 'John', 'last_name', 'Doe-' || x, 'company', '',
				'address_1', x || ' Market Street', 'address_2', '', 'city', 'San Francisco',
				'state', 'CA', 'postcode', '94103', 'country', 'US', 'email', 'customer' || x || '@example.com',
				'phone', '(555) 555-5555',
				'shipping', jsonb_build_object('first_name', 'John', 'last_name', 'Doe-' || x,
					'address_1', x || ' Market Street', 'city', 'San Francisco', 'state', 'CA',
					'postcode', '94103', 'country', 'US', 'method', 'flat_rate')),
			(SELECT jsonb_agg(jsonb_build_object('id', x * 10 + n, 'name', 'Woo Product ' || n,
					'product_id', 100 + n, 'variation_id', 0, 'quantity', 1 + n % 3,
					'tax_class', '', 'subtotal', (3.5 * n)::numeric(12,2)::text,
					'total', (3.5 * n)::numeric(12,2)::text, 'total_tax', '0.00',
					'sku', 'WOO-' || (100 + n), 'price', 3.5 * n))
			 FROM generate_series(1, 3 + (x % 4)::int) AS n)
		FROM generate_series(x0 + 1, x0 + 6) AS x;
		UPDATE orders SET status = (ARRAY['processing','on-hold','completed'])[bench_rev + 1],
			date_paid = now(), bench_rev = bench_rev + 1 WHERE id = ANY (leads);
		DELETE FROM orders WHERE id = gone;
	ELSE
		INSERT INTO products (id, name, sku, price, stock, tags, attributes, on_sale)
		SELECT x, 'Hoodie with Logo ' || x, 'WOO-HOODIE-' || x, 45 + x % 30, 100,
			ARRAY['clothing', 'hoodies', 'logo', 'tag-' || (x % 50)],
			jsonb_build_object('color', jsonb_build_array('Blue', 'Green', 'Red'),
				'size', jsonb_build_array('S', 'M', 'L', 'XL'), 'material', 'cotton',
				'weight', '0.5', 'dimensions', jsonb_build_object('length', '30', 'width', '20', 'height', '3')),
			x % 5 = 0
		FROM generate_series(x0 + 1, x0 + 6) AS x;
		UPDATE products SET stock = stock - 1, on_sale = NOT on_sale, date_modified = now(),
			bench_rev = bench_rev + 1 WHERE id = ANY (leads);
		DELETE FROM products WHERE id = gone;
	END IF;
END
$$;

CREATE PROCEDURE bench_load(first bigint, last bigint) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first .. last - 1 LOOP
		PERFORM bench_step(i);
		COMMIT;
	END LOOP;
END
$$;
`
