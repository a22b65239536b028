package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/examples/woocommerce"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgcluster"
	"github.com/walhook/walhook/internal/shop"
)

const demoSecret = "demo-secret-change-me"

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("walhook demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runFor := fs.Duration("for", 0, "stop after this long (default: run until Ctrl-C)")
	verbose := fs.Bool("verbose", false, "also print walhook's own log")
	profile := fs.String("profile", "shop", "shop: the bodies are the table rows; woocommerce: WooCommerce REST API v3 objects built by payload_query (examples/woocommerce)")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if *profile != "shop" && *profile != "woocommerce" {
		fmt.Fprintf(stderr, "walhook demo: unknown --profile %q: want shop or woocommerce\n", *profile)
		return exitError{2}
	}
	woo := *profile == "woocommerce"
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	binDir, err := pgcluster.BinDir()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stdout, "walhook demo: starting a private PostgreSQL from %s …\n", binDir)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(stderr, "demo: stop PostgreSQL:", err)
		}
	}()
	dbURL, err := cluster.CreateDatabase(ctx, "shop")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("demo: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	schema := shop.Schema
	if woo {
		schema = woocommerce.Schema
	}
	if _, err := conn.Exec(ctx, schema); err != nil {
		return fmt.Errorf("demo: create the shop schema: %w", err)
	}

	recv := &demoReceiver{out: stdout, secret: []byte(demoSecret)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: receiver: %w", err)
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	var cfg *config.Config
	if woo {
		cfg, err = wooDemoConfig(dbURL, "http://"+ln.Addr().String())
	} else {
		cfg, err = config.Parse("demo.yaml", []byte(demoConfig(dbURL, "http://"+ln.Addr().String())), func(string) (string, bool) { return "", false })
	}
	if err != nil {
		return fmt.Errorf("demo: configuration: %w", err)
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))

	if woo {
		fmt.Fprintf(stdout, "walhook demo: WooCommerce profile: bodies are WooCommerce REST API v3 objects built by payload_query\n")
		fmt.Fprintf(stdout, "walhook demo: receiver on http://%s, webhooks for all 12 core topics\n", ln.Addr())
	} else {
		fmt.Fprintf(stdout, "walhook demo: receiver on http://%s, webhooks for all 12 core topics and action.demo_checkout\n", ln.Addr())
	}
	fmt.Fprintln(stdout, "walhook demo: making changes to the shop; press Ctrl-C to stop")
	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	listening := make(chan net.Addr, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr <- app.Run(ctx, cfg, app.Options{Version: version, Logger: log, Listening: func(a net.Addr) { listening <- a }})
	}()
	changesErr := make(chan error, 1)
	go func() {
		// Changes made before walhook streams would still be delivered
		// (the slot keeps them), but starting after makes the demo's
		// output easy to follow from the first line.
		select {
		case addr := <-listening:
			fmt.Fprintf(stdout, "walhook demo: metrics on http://%s/metrics, health on /healthz and /readyz\n", addr)
			waitReady(ctx, "http://"+addr.String()+"/readyz")
		case <-ctx.Done():
		}
		if woo {
			changesErr <- wooDemoChanges(ctx, conn)
		} else {
			changesErr <- demoChanges(ctx, conn)
		}
	}()

	var err1 error
	select {
	case err1 = <-runErr:
	case err := <-changesErr:
		if err != nil && ctx.Err() == nil {
			err1 = err
		}
		<-ctx.Done()
		err1 = errors.Join(err1, <-runErr)
	}
	wg.Wait()
	fmt.Fprintf(stdout, "walhook demo: stopped after %d deliveries (%d with a bad signature)\n", recv.count(), recv.bad())
	if err1 != nil {
		return fmt.Errorf("demo: %w", err1)
	}
	return nil
}

func demoConfig(dbURL, receiver string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `postgres:
  url: %q
  slot: walhook_demo
  publication: walhook_demo
  status_interval: 2s
source: https://shop.example.com/
resources:
  coupon:   { table: public.coupons }
  customer: { table: public.customers, exclude_columns: [password_hash] }
  order:    { table: public.orders }
  product:  { table: public.products }
delivery:
  allow_private_networks: true
  shutdown_grace: 3s
http:
  listen: 127.0.0.1:0
webhooks:
`, dbURL)
	id := 1
	for _, r := range []string{"coupon", "customer", "order", "product"} {
		for _, e := range []string{"created", "updated", "deleted"} {
			fmt.Fprintf(&b, "  - { id: %d, name: %s %s, topic: %s.%s, delivery_url: %q, secret: %q }\n",
				id, r, e, r, e, receiver+"/"+r, demoSecret)
			id++
		}
	}
	fmt.Fprintf(&b, "  - { id: %d, name: checkout action, topic: action.demo_checkout, delivery_url: %q, secret: %q }\n", id, receiver+"/actions", demoSecret)
	return b.String()
}

// wooDemoConfig is the WooCommerce profile (examples/woocommerce) for the
// demo's database and receiver, with the demo's own slot, listener and
// short timings.
func wooDemoConfig(dbURL, receiver string) (*config.Config, error) {
	cfg, err := woocommerce.Load(map[string]string{
		"DATABASE_URL": dbURL, "WEBHOOK_URL": receiver + "/woocommerce", "WEBHOOK_SECRET": demoSecret,
		"ALLOW_PRIVATE_NETWORKS": "true",
	})
	if err != nil {
		return nil, err
	}
	cfg.Postgres.Slot, cfg.Postgres.Publication = "walhook_demo", "walhook_demo"
	cfg.Postgres.StatusInterval = 2 * time.Second
	cfg.Delivery.ShutdownGrace = 3 * time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	return cfg, nil
}

// wooDemoChanges makes WooCommerce-like shop activity every two seconds:
// a checkout (a customer, three products, a coupon and an order of three
// line items, in one transaction), its payment, and, every other time,
// the previous order and coupon deleted.
func wooDemoChanges(ctx context.Context, conn *pgx.Conn) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		for _, stmts := range [][]string{woocommerce.Sample(n), woocommerce.Paid(n)} {
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				for _, s := range stmts {
					if _, err := tx.Exec(ctx, s); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if n%2 == 0 {
			for _, s := range []string{
				fmt.Sprintf(`DELETE FROM orders WHERE id = %d`, n-1),
				fmt.Sprintf(`DELETE FROM coupons WHERE id = %d`, n-1),
			} {
				if _, err := conn.Exec(ctx, s); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// waitReady polls a /readyz URL until it answers 200 or ctx ends.
func waitReady(ctx context.Context, url string) {
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// demoChanges makes a few shop changes every two seconds.
func demoChanges(ctx context.Context, conn *pgx.Conn) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		stmts := []string{
			fmt.Sprintf(`INSERT INTO customers (email, first_name, last_name, password_hash, billing)
				VALUES ('jane%d@example.com', 'Jane', 'Doe', 'secret-hash-never-sent', '{"city": "Lyon", "country": "FR"}')`, n),
			fmt.Sprintf(`INSERT INTO products (name, sku, price, stock, tags, attributes)
				VALUES ('Mug %d', 'MUG-%d', 12.50, 40, '{kitchen,gift}', '{"color": "blue"}')`, n, n),
			fmt.Sprintf(`INSERT INTO coupons (code, amount, date_expires) VALUES ('SAVE%d', 10.00, now() + interval '30 days')`, n),
			fmt.Sprintf(`INSERT INTO orders (customer_id, total, billing, line_items)
				VALUES (currval('customers_id_seq'), 25.00, '{"email": "jane%d@example.com"}',
				        '[{"sku": "MUG-%d", "quantity": 2, "price": "12.50"}]')`, n, n),
			`UPDATE orders SET status = 'processing', date_paid = now() WHERE id = currval('orders_id_seq')`,
			`UPDATE products SET stock = stock - 2, on_sale = true WHERE id = currval('products_id_seq')`,
			`UPDATE customers SET last_name = 'Doe-Martin' WHERE id = currval('customers_id_seq')`,
			`UPDATE coupons SET amount = 15.00 WHERE id = currval('coupons_id_seq')`,
			`SELECT pg_logical_emit_message(true, 'demo_checkout', json_build_object('order_id', currval('orders_id_seq'))::text)`,
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if n%2 == 0 {
			for _, s := range []string{
				`DELETE FROM coupons WHERE id = currval('coupons_id_seq') - 1`,
				`DELETE FROM orders WHERE id = currval('orders_id_seq') - 1`,
				`DELETE FROM products WHERE id = currval('products_id_seq') - 1`,
				`DELETE FROM customers WHERE id = currval('customers_id_seq') - 1 AND NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = customers.id)`,
			} {
				if _, err := conn.Exec(ctx, s); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// demoReceiver verifies each delivery's signature and prints one line.
type demoReceiver struct {
	out    io.Writer
	secret []byte
	mu     sync.Mutex
	n, bd  int
}

func (r *demoReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	topic := req.Header.Get("X-WC-Webhook-Topic")
	r.mu.Lock()
	defer r.mu.Unlock()
	if topic == "" { // an activation ping: webhook_id=<id>, unsigned
		fmt.Fprintf(r.out, "  ping      %-21s %s\n", "", body)
		return
	}
	mac := hmac.New(sha256.New, r.secret)
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	verdict := "signature ok"
	if !hmac.Equal([]byte(want), []byte(req.Header.Get("X-WC-Webhook-Signature"))) {
		verdict = "BAD SIGNATURE"
		r.bd++
	}
	r.n++
	excerpt := string(body)
	if len(excerpt) > 110 {
		excerpt = excerpt[:110] + "…"
	}
	var order struct {
		Status    string            `json:"status"`
		LineItems []json.RawMessage `json:"line_items"`
	}
	if json.Unmarshal(body, &order) == nil && order.LineItems != nil {
		excerpt = fmt.Sprintf("[%s, %d line_items] %s", order.Status, len(order.LineItems), excerpt)
	}
	fmt.Fprintf(r.out, "  delivery  %-21s webhook %-2s %s  %s\n", topic, req.Header.Get("X-WC-Webhook-ID"), verdict, excerpt)
}

func (r *demoReceiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *demoReceiver) bad() int   { r.mu.Lock(); defer r.mu.Unlock(); return r.bd }
