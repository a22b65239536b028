// Package shop holds the sample shop schema used by the demo, the
// end-to-end tests and the bench: WooCommerce-like coupons, customers,
// orders and products.
package shop

// Schema is a small shop: WooCommerce-like coupons, customers, orders
// and products. REPLICA IDENTITY FULL lets walhook send large unchanged
// values correctly (see the README on TOAST).
const Schema = `
CREATE TABLE customers (
	id            bigserial PRIMARY KEY,
	email         text NOT NULL UNIQUE,
	first_name    text NOT NULL,
	last_name     text NOT NULL,
	password_hash text NOT NULL,
	billing       jsonb NOT NULL DEFAULT '{}',
	date_created  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
	id            bigserial PRIMARY KEY,
	name          text NOT NULL,
	sku           text NOT NULL UNIQUE,
	price         numeric(12,2) NOT NULL,
	stock         integer NOT NULL DEFAULT 0,
	tags          text[] NOT NULL DEFAULT '{}',
	attributes    jsonb NOT NULL DEFAULT '{}',
	on_sale       boolean NOT NULL DEFAULT false,
	date_modified timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE coupons (
	id            bigserial PRIMARY KEY,
	code          text NOT NULL UNIQUE,
	amount        numeric(12,2) NOT NULL,
	discount_type text NOT NULL DEFAULT 'percent',
	date_expires  timestamptz
);
CREATE TABLE orders (
	id            bigserial PRIMARY KEY,
	customer_id   bigint REFERENCES customers (id),
	status        text NOT NULL DEFAULT 'pending',
	currency      char(3) NOT NULL DEFAULT 'EUR',
	total         numeric(12,2) NOT NULL,
	billing       jsonb NOT NULL DEFAULT '{}',
	line_items    jsonb NOT NULL DEFAULT '[]',
	date_created  timestamptz NOT NULL DEFAULT now(),
	date_paid     timestamptz
);
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE products REPLICA IDENTITY FULL;
ALTER TABLE coupons REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
`
