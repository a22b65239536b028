// Package woocommerce is walhook's WooCommerce profile: a WooCommerce-like
// shop schema (schema.sql) and a configuration (walhook.yaml) whose
// payload queries send WooCommerce REST API v3 orders, products,
// customers and coupons. The demo runs it (walhook demo --profile
// woocommerce) and the tests check its shapes against WooCommerce's
// documented examples in testdata.
package woocommerce

import (
	_ "embed"
	"fmt"

	"github.com/walhook/walhook/config"
)

// Schema creates the shop's tables and the SQL helpers the payload
// queries use.
//
//go:embed schema.sql
var Schema string

// ConfigYAML is the profile's configuration. It reads DATABASE_URL,
// WEBHOOK_URL, WEBHOOK_SECRET and, optionally, SHOP_URL from the
// environment.
//
//go:embed walhook.yaml
var ConfigYAML []byte

// Load parses the profile's configuration with env standing in for the
// environment.
func Load(env map[string]string) (*config.Config, error) {
	return config.Parse("examples/woocommerce/walhook.yaml", ConfigYAML, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

// Sample returns the statements of one transaction of shop activity
// number n (from 1): customer n with her addresses; products 3n-2, 3n-1
// and 3n with categories, a tag and images; coupon n; and order n of
// those three products for that customer: three line items (one with
// item meta), a shipping line, a tax line, billing and shipping
// addresses and order meta. Ids are explicit so that callers know them.
func Sample(n int) []string {
	p1, p2, p3 := 3*n-2, 3*n-1, 3*n
	return []string{
		`INSERT INTO product_categories (id, name, slug) VALUES (9, 'Clothing', 'clothing'), (14, 'T-shirts', 't-shirts'), (15, 'Accessories', 'accessories')
		 ON CONFLICT DO NOTHING`,
		`INSERT INTO product_tags (id, name, slug) VALUES (30, 'Summer', 'summer') ON CONFLICT DO NOTHING`,
		fmt.Sprintf(`INSERT INTO customers (id, email, first_name, last_name, username, password_hash, billing, shipping)
		 VALUES (%[1]d, 'john.doe%[1]d@example.com', 'John', 'Doe', 'john.doe%[1]d', '$P$Bnever-sent',
		   '{"first_name": "John", "last_name": "Doe", "address_1": "969 Market", "city": "San Francisco", "state": "CA",
		     "postcode": "94103", "country": "US", "email": "john.doe%[1]d@example.com", "phone": "(555) 555-5555"}',
		   '{"first_name": "John", "last_name": "Doe", "address_1": "969 Market", "city": "San Francisco", "state": "CA",
		     "postcode": "94103", "country": "US"}')`, n),
		fmt.Sprintf(`INSERT INTO customer_meta (customer_id, key, value) VALUES (%d, 'newsletter', 'yes')`, n),
		fmt.Sprintf(`INSERT INTO products (id, name, slug, sku, regular_price, sale_price, manage_stock, stock_quantity,
		   description, short_description, weight, length, width, height, upsell_ids)
		 VALUES (%[1]d, 'Premium Quality %[1]d', 'premium-quality-%[1]d', 'PQ-%[1]d', 21.99, NULL, true, 40,
		           '<p>Pellentesque habitant morbi tristique.</p>', '<p>Pellentesque.</p>', '0.3', '30', '20', '2', '{%[2]d}'),
		        (%[2]d, 'Ship Your Idea %[2]d', 'ship-your-idea-%[2]d', 'SYI-%[2]d', 12.00, 10.00, false, NULL,
		           '', '', '', '', '', '', '{}'),
		        (%[3]d, 'Woo Cap %[3]d', 'woo-cap-%[3]d', 'CAP-%[3]d', 18.00, NULL, false, NULL, '', '', '', '', '', '', '{}')`, p1, p2, p3),
		fmt.Sprintf(`INSERT INTO product_category_links (product_id, category_id) VALUES (%d, 9), (%d, 14), (%d, 9), (%d, 15)`, p1, p1, p2, p3),
		fmt.Sprintf(`INSERT INTO product_tag_links (product_id, tag_id) VALUES (%d, 30)`, p2),
		fmt.Sprintf(`INSERT INTO product_images (product_id, src, position) VALUES
		   (%[1]d, 'https://shop.example.com/wp-content/uploads/T_2_front.jpg', 0),
		   (%[1]d, 'https://shop.example.com/wp-content/uploads/T_2_back.jpg', 1),
		   (%[2]d, 'https://shop.example.com/wp-content/uploads/idea.jpg', 0)`, p1, p2),
		fmt.Sprintf(`INSERT INTO product_meta (product_id, key, value) VALUES (%d, 'origin', 'PT')`, p1),
		fmt.Sprintf(`INSERT INTO coupons (id, code, amount, discount_type, individual_use, exclude_sale_items, minimum_amount,
		   product_ids, email_restrictions, usage_limit, date_expires)
		 VALUES (%[1]d, '10off-%[1]d', 10.00, 'percent', true, true, 100.00, '{%[2]d}', '{"*@example.com"}', 100, now() + interval '30 days')`, n, p1),
		fmt.Sprintf(`INSERT INTO coupon_meta (coupon_id, key, value) VALUES (%d, 'campaign', 'spring')`, n),
		fmt.Sprintf(`INSERT INTO orders (id, customer_id, status, currency, payment_method, payment_method_title,
		   customer_ip_address, customer_user_agent, shipping_total, cart_tax, total, total_tax, created_via)
		 VALUES (%[1]d, %[1]d, 'pending', 'USD', 'bacs', 'Direct Bank Transfer', '203.0.113.7', 'Mozilla/5.0',
		   10.00, 3.06, 74.05, 3.06, 'checkout')`, n),
		fmt.Sprintf(`INSERT INTO order_addresses (order_id, address_type, first_name, last_name, address_1, city, state, postcode, country, email, phone)
		 VALUES (%[1]d, 'billing', 'John', 'Doe', '969 Market', 'San Francisco', 'CA', '94103', 'US', 'john.doe%[1]d@example.com', '(555) 555-5555'),
		        (%[1]d, 'shipping', 'John', 'Doe', '969 Market', 'San Francisco', 'CA', '94103', 'US', '', '')`, n),
		fmt.Sprintf(`INSERT INTO order_items (order_id, item_type, name, product_id, quantity, subtotal, subtotal_tax, total, total_tax, sku, price)
		 VALUES (%[1]d, 'line_item', 'Premium Quality %[2]d', %[2]d, 2, 43.98, 1.98, 43.98, 1.98, 'PQ-%[2]d', 21.99),
		        (%[1]d, 'line_item', 'Ship Your Idea %[3]d', %[3]d, 1, 10.00, 0.45, 10.00, 0.45, 'SYI-%[3]d', 10.00),
		        (%[1]d, 'line_item', 'Woo Cap %[4]d', %[4]d, 1, 18.00, 0.63, 18.00, 0.63, 'CAP-%[4]d', 18.00)`, n, p1, p2, p3),
		fmt.Sprintf(`INSERT INTO order_item_meta (item_id, key, value)
		 SELECT id, 'pa_color', 'black' FROM order_items WHERE order_id = %d AND product_id = %d`, n, p2),
		fmt.Sprintf(`INSERT INTO order_items (order_id, item_type, name, method_id, total) VALUES (%d, 'shipping', 'Flat Rate', 'flat_rate', 10.00)`, n),
		fmt.Sprintf(`INSERT INTO order_items (order_id, item_type, name, rate_id, rate_code, total, total_tax)
		 VALUES (%d, 'tax', 'State Tax', 75, 'US-CA-STATE TAX', 3.06, 0.00)`, n),
		fmt.Sprintf(`INSERT INTO order_meta (order_id, key, value) VALUES (%d, '_download_permissions_granted', 'yes')`, n),
	}
}

// Paid returns the statements of order n being paid, in one
// transaction: the order moves to processing with its payment date, its
// customer becomes a paying customer, coupon n is used once and the
// first product's stock goes down.
func Paid(n int) []string {
	return []string{
		fmt.Sprintf(`UPDATE orders SET status = 'processing', date_paid = now(), date_modified = now(),
		   transaction_id = 'tx-%[1]d' WHERE id = %[1]d`, n),
		fmt.Sprintf(`UPDATE customers SET is_paying_customer = true, date_modified = now() WHERE id = %d`, n),
		fmt.Sprintf(`UPDATE coupons SET usage_count = usage_count + 1, used_by = used_by || '%[1]d'::text, date_modified = now() WHERE id = %[1]d`, n),
		fmt.Sprintf(`UPDATE products SET stock_quantity = stock_quantity - 2, total_sales = total_sales + 2, date_modified = now() WHERE id = %d`, 3*n-2),
	}
}
