-- A WooCommerce-like shop schema for walhook's WooCommerce profile
-- (walhook.yaml next to this file). Its tables follow WooCommerce's own
-- data: orders with their addresses, items (line items, shipping, tax,
-- fee and coupon lines), item meta, order meta and refunds; products with
-- categories, tags and images; customers; coupons; and shop_options, the
-- site's URL and time zone as WordPress keeps them. The payload queries
-- in walhook.yaml turn rows of these tables into WooCommerce REST API v3
-- objects.
--
-- Only the four resource tables (orders, products, customers, coupons)
-- are published; the others are read by the payload queries. A change
-- that touches only a child table (an order item, a product image) sends
-- no webhook by itself: touch the parent's date_modified in the same
-- transaction, as WooCommerce does when it saves an object.

CREATE TABLE shop_options (
	name  text PRIMARY KEY,
	value text NOT NULL
);
INSERT INTO shop_options VALUES
	('siteurl', 'https://shop.example.com'),
	('timezone_string', 'America/Sao_Paulo');

-- wc_site_url is the site's URL without a trailing slash.
CREATE FUNCTION wc_site_url() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT rtrim(value, '/') FROM shop_options WHERE name = 'siteurl' $$;

-- wc_date is a time in the site's time zone, wc_date_gmt in UTC, both as
-- WooCommerce writes them: 2017-03-22T16:28:02, without an offset.
CREATE FUNCTION wc_date(t timestamptz) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT to_char(t AT TIME ZONE COALESCE((SELECT value FROM shop_options WHERE name = 'timezone_string'), 'UTC'),
                  'YYYY-MM-DD"T"HH24:MI:SS') $$;
CREATE FUNCTION wc_date_gmt(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') $$;

-- wc_links is the _links object of a REST resource, e.g. wc_links('orders', 727).
CREATE FUNCTION wc_links(collection text, id bigint) RETURNS jsonb LANGUAGE sql STABLE AS
$$ SELECT jsonb_build_object(
	'self', jsonb_build_array(jsonb_build_object('href', wc_site_url() || '/wp-json/wc/v3/' || collection || '/' || id)),
	'collection', jsonb_build_array(jsonb_build_object('href', wc_site_url() || '/wp-json/wc/v3/' || collection))) $$;

-- wc_address is an address object with every field WooCommerce sends,
-- "" for those a stored address lacks; with contact, email and phone too.
CREATE FUNCTION wc_address(a jsonb, contact boolean) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
$$ SELECT jsonb_build_object(
	'first_name', COALESCE(a->>'first_name', ''), 'last_name', COALESCE(a->>'last_name', ''),
	'company', COALESCE(a->>'company', ''), 'address_1', COALESCE(a->>'address_1', ''),
	'address_2', COALESCE(a->>'address_2', ''), 'city', COALESCE(a->>'city', ''),
	'state', COALESCE(a->>'state', ''), 'postcode', COALESCE(a->>'postcode', ''),
	'country', COALESCE(a->>'country', ''))
	|| CASE WHEN contact THEN jsonb_build_object('email', COALESCE(a->>'email', ''), 'phone', COALESCE(a->>'phone', ''))
	        ELSE '{}'::jsonb END $$;

CREATE TABLE customers (
	id                 bigserial PRIMARY KEY,
	email              text NOT NULL UNIQUE,
	first_name         text NOT NULL DEFAULT '',
	last_name          text NOT NULL DEFAULT '',
	role               text NOT NULL DEFAULT 'customer',
	username           text NOT NULL UNIQUE,
	password_hash      text NOT NULL DEFAULT '',
	billing            jsonb NOT NULL DEFAULT '{}',
	shipping           jsonb NOT NULL DEFAULT '{}',
	is_paying_customer boolean NOT NULL DEFAULT false,
	date_created       timestamptz NOT NULL DEFAULT now(),
	date_modified      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE customer_meta (
	id          bigserial PRIMARY KEY,
	customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
	key         text NOT NULL,
	value       text NOT NULL DEFAULT ''
);
CREATE INDEX ON customer_meta (customer_id);

CREATE TABLE product_categories (
	id   bigserial PRIMARY KEY,
	name text NOT NULL,
	slug text NOT NULL UNIQUE
);
CREATE TABLE product_tags (
	id   bigserial PRIMARY KEY,
	name text NOT NULL,
	slug text NOT NULL UNIQUE
);
CREATE TABLE products (
	id                 bigserial PRIMARY KEY,
	name               text NOT NULL,
	slug               text NOT NULL UNIQUE,
	type               text NOT NULL DEFAULT 'simple',
	status             text NOT NULL DEFAULT 'publish',
	featured           boolean NOT NULL DEFAULT false,
	catalog_visibility text NOT NULL DEFAULT 'visible',
	description        text NOT NULL DEFAULT '',
	short_description  text NOT NULL DEFAULT '',
	sku                text NOT NULL DEFAULT '',
	regular_price      numeric(12,2),
	sale_price         numeric(12,2),
	date_on_sale_from  timestamptz,
	date_on_sale_to    timestamptz,
	total_sales        integer NOT NULL DEFAULT 0,
	virtual            boolean NOT NULL DEFAULT false,
	downloadable       boolean NOT NULL DEFAULT false,
	download_limit     integer NOT NULL DEFAULT -1,
	download_expiry    integer NOT NULL DEFAULT -1,
	external_url       text NOT NULL DEFAULT '',
	button_text        text NOT NULL DEFAULT '',
	tax_status         text NOT NULL DEFAULT 'taxable',
	tax_class          text NOT NULL DEFAULT '',
	manage_stock       boolean NOT NULL DEFAULT false,
	stock_quantity     integer,
	stock_status       text NOT NULL DEFAULT 'instock',
	backorders         text NOT NULL DEFAULT 'no',
	sold_individually  boolean NOT NULL DEFAULT false,
	weight             text NOT NULL DEFAULT '',
	length             text NOT NULL DEFAULT '',
	width              text NOT NULL DEFAULT '',
	height             text NOT NULL DEFAULT '',
	shipping_class     text NOT NULL DEFAULT '',
	shipping_class_id  bigint NOT NULL DEFAULT 0,
	reviews_allowed    boolean NOT NULL DEFAULT true,
	average_rating     numeric(3,2) NOT NULL DEFAULT 0,
	rating_count       integer NOT NULL DEFAULT 0,
	upsell_ids         bigint[] NOT NULL DEFAULT '{}',
	cross_sell_ids     bigint[] NOT NULL DEFAULT '{}',
	parent_id          bigint NOT NULL DEFAULT 0,
	purchase_note      text NOT NULL DEFAULT '',
	menu_order         integer NOT NULL DEFAULT 0,
	date_created       timestamptz NOT NULL DEFAULT now(),
	date_modified      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE product_category_links (
	product_id  bigint NOT NULL REFERENCES products ON DELETE CASCADE,
	category_id bigint NOT NULL REFERENCES product_categories ON DELETE CASCADE,
	PRIMARY KEY (product_id, category_id)
);
CREATE TABLE product_tag_links (
	product_id bigint NOT NULL REFERENCES products ON DELETE CASCADE,
	tag_id     bigint NOT NULL REFERENCES product_tags ON DELETE CASCADE,
	PRIMARY KEY (product_id, tag_id)
);
CREATE TABLE product_images (
	id            bigserial PRIMARY KEY,
	product_id    bigint NOT NULL REFERENCES products ON DELETE CASCADE,
	src           text NOT NULL,
	name          text NOT NULL DEFAULT '',
	alt           text NOT NULL DEFAULT '',
	position      integer NOT NULL DEFAULT 0,
	date_created  timestamptz NOT NULL DEFAULT now(),
	date_modified timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON product_images (product_id);
CREATE TABLE product_meta (
	id         bigserial PRIMARY KEY,
	product_id bigint NOT NULL REFERENCES products ON DELETE CASCADE,
	key        text NOT NULL,
	value      text NOT NULL DEFAULT ''
);
CREATE INDEX ON product_meta (product_id);

CREATE TABLE coupons (
	id                          bigserial PRIMARY KEY,
	code                        text NOT NULL UNIQUE,
	amount                      numeric(12,2) NOT NULL DEFAULT 0,
	discount_type               text NOT NULL DEFAULT 'fixed_cart',
	description                 text NOT NULL DEFAULT '',
	date_expires                timestamptz,
	usage_count                 integer NOT NULL DEFAULT 0,
	individual_use              boolean NOT NULL DEFAULT false,
	product_ids                 bigint[] NOT NULL DEFAULT '{}',
	excluded_product_ids        bigint[] NOT NULL DEFAULT '{}',
	usage_limit                 integer,
	usage_limit_per_user        integer,
	limit_usage_to_x_items      integer,
	free_shipping               boolean NOT NULL DEFAULT false,
	product_categories          bigint[] NOT NULL DEFAULT '{}',
	excluded_product_categories bigint[] NOT NULL DEFAULT '{}',
	exclude_sale_items          boolean NOT NULL DEFAULT false,
	minimum_amount              numeric(12,2) NOT NULL DEFAULT 0,
	maximum_amount              numeric(12,2) NOT NULL DEFAULT 0,
	email_restrictions          text[] NOT NULL DEFAULT '{}',
	used_by                     text[] NOT NULL DEFAULT '{}',
	date_created                timestamptz NOT NULL DEFAULT now(),
	date_modified               timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE coupon_meta (
	id        bigserial PRIMARY KEY,
	coupon_id bigint NOT NULL REFERENCES coupons ON DELETE CASCADE,
	key       text NOT NULL,
	value     text NOT NULL DEFAULT ''
);
CREATE INDEX ON coupon_meta (coupon_id);

CREATE TABLE orders (
	id                   bigserial PRIMARY KEY,
	parent_id            bigint NOT NULL DEFAULT 0,
	order_key            text NOT NULL DEFAULT 'wc_order_' || substr(md5(random()::text), 1, 13),
	created_via          text NOT NULL DEFAULT 'checkout',
	version              text NOT NULL DEFAULT '9.4.0',
	status               text NOT NULL DEFAULT 'pending',
	currency             char(3) NOT NULL DEFAULT 'USD',
	prices_include_tax   boolean NOT NULL DEFAULT false,
	customer_id          bigint NOT NULL DEFAULT 0, -- 0: a guest
	customer_ip_address  text NOT NULL DEFAULT '',
	customer_user_agent  text NOT NULL DEFAULT '',
	customer_note        text NOT NULL DEFAULT '',
	payment_method       text NOT NULL DEFAULT '',
	payment_method_title text NOT NULL DEFAULT '',
	transaction_id       text NOT NULL DEFAULT '',
	cart_hash            text NOT NULL DEFAULT '',
	discount_total       numeric(12,2) NOT NULL DEFAULT 0,
	discount_tax         numeric(12,2) NOT NULL DEFAULT 0,
	shipping_total       numeric(12,2) NOT NULL DEFAULT 0,
	shipping_tax         numeric(12,2) NOT NULL DEFAULT 0,
	cart_tax             numeric(12,2) NOT NULL DEFAULT 0,
	total                numeric(12,2) NOT NULL DEFAULT 0,
	total_tax            numeric(12,2) NOT NULL DEFAULT 0,
	date_created         timestamptz NOT NULL DEFAULT now(),
	date_modified        timestamptz NOT NULL DEFAULT now(),
	date_paid            timestamptz,
	date_completed       timestamptz
);
CREATE TABLE order_addresses (
	order_id     bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
	address_type text NOT NULL CHECK (address_type IN ('billing', 'shipping')),
	first_name   text NOT NULL DEFAULT '',
	last_name    text NOT NULL DEFAULT '',
	company      text NOT NULL DEFAULT '',
	address_1    text NOT NULL DEFAULT '',
	address_2    text NOT NULL DEFAULT '',
	city         text NOT NULL DEFAULT '',
	state        text NOT NULL DEFAULT '',
	postcode     text NOT NULL DEFAULT '',
	country      text NOT NULL DEFAULT '',
	email        text NOT NULL DEFAULT '',
	phone        text NOT NULL DEFAULT '',
	PRIMARY KEY (order_id, address_type)
);
-- order_items holds every item of an order, as WooCommerce's
-- woocommerce_order_items does: line items, shipping lines (method_id),
-- tax lines (rate_id, rate_code, compound; total is the tax total and
-- total_tax the shipping tax total), fee lines (tax_status) and coupon
-- lines (name is the code, total the discount, total_tax its tax).
CREATE TABLE order_items (
	id           bigserial PRIMARY KEY,
	order_id     bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
	item_type    text NOT NULL DEFAULT 'line_item'
	             CHECK (item_type IN ('line_item', 'shipping', 'tax', 'fee', 'coupon')),
	name         text NOT NULL,
	product_id   bigint NOT NULL DEFAULT 0,
	variation_id bigint NOT NULL DEFAULT 0,
	quantity     integer NOT NULL DEFAULT 1,
	tax_class    text NOT NULL DEFAULT '',
	tax_status   text NOT NULL DEFAULT 'taxable',
	subtotal     numeric(12,2) NOT NULL DEFAULT 0,
	subtotal_tax numeric(12,2) NOT NULL DEFAULT 0,
	total        numeric(12,2) NOT NULL DEFAULT 0,
	total_tax    numeric(12,2) NOT NULL DEFAULT 0,
	sku          text NOT NULL DEFAULT '',
	price        numeric(12,2) NOT NULL DEFAULT 0,
	method_id    text NOT NULL DEFAULT '',
	rate_id      bigint NOT NULL DEFAULT 0,
	rate_code    text NOT NULL DEFAULT '',
	compound     boolean NOT NULL DEFAULT false
);
CREATE INDEX ON order_items (order_id);
CREATE TABLE order_item_meta (
	id      bigserial PRIMARY KEY,
	item_id bigint NOT NULL REFERENCES order_items ON DELETE CASCADE,
	key     text NOT NULL,
	value   text NOT NULL DEFAULT ''
);
CREATE INDEX ON order_item_meta (item_id);
CREATE TABLE order_meta (
	id       bigserial PRIMARY KEY,
	order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
	key      text NOT NULL,
	value    text NOT NULL DEFAULT ''
);
CREATE INDEX ON order_meta (order_id);
CREATE TABLE order_refunds (
	id       bigserial PRIMARY KEY,
	order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
	reason   text NOT NULL DEFAULT '',
	total    numeric(12,2) NOT NULL
);
CREATE INDEX ON order_refunds (order_id);

-- walhook needs the whole old row of a published table to send correct
-- updates of large unchanged values (see the README on TOAST).
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE products REPLICA IDENTITY FULL;
ALTER TABLE coupons REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
