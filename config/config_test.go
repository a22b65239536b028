package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// envOf returns a lookup function over vars.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// mustParse parses src and fails the test on any problem.
func mustParse(t *testing.T, src string, env func(string) (string, bool)) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src), env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

const minimal = `
postgres:
  url: postgres://walhook@localhost/shop
source: https://shop.example.com
`

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal, noEnv)
	want := Defaults()
	want.Postgres.URL = "postgres://walhook@localhost/shop"
	want.Source = "https://shop.example.com/"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"slot", c.Postgres.Slot, "walhook"},
		{"publication", c.Postgres.Publication, "walhook"},
		{"state_schema", c.Postgres.StateSchema, "walhook"},
		{"status_interval", c.Postgres.StatusInterval, 10 * time.Second},
		{"resources", len(c.Resources), 4},
		{"timeout", c.Delivery.Timeout, 5 * time.Second},
		{"max_failures", c.Delivery.MaxFailures, 5},
		{"concurrency", c.Delivery.Concurrency, 8},
		{"allow_private_networks", c.Delivery.AllowPrivateNetworks, false},
		{"coalesce", c.Delivery.Coalesce, "transaction"},
		{"shutdown_grace", c.Delivery.ShutdownGrace, 10 * time.Second},
		{"retry.attempts", c.Delivery.Retry.Attempts, 3},
		{"retry.backoff", c.Delivery.Retry.Backoff, 500 * time.Millisecond},
		{"retry.max_backoff", c.Delivery.Retry.MaxBackoff, 10 * time.Second},
		{"retry.retry_after_cap", c.Delivery.Retry.RetryAfterCap, 60 * time.Second},
		{"retry.parked_backoff", c.Delivery.Retry.ParkedBackoff, time.Minute},
		{"retry.parked_max_backoff", c.Delivery.Retry.ParkedMaxBackoff, time.Hour},
		{"retry.probe_interval", c.Delivery.Retry.ProbeInterval, time.Second},
		{"retry.probe_max_interval", c.Delivery.Retry.ProbeMaxInterval, 30 * time.Second},
		{"disable_after", c.Delivery.DisableAfter, time.Hour},
		{"coalesce_max", c.Delivery.CoalesceMax, 10000},
		{"park_limit.rows", c.Delivery.ParkLimit.Rows, int64(100000)},
		{"park_limit.bytes", c.Delivery.ParkLimit.Bytes, int64(256 << 20)},
		{"listen", c.HTTP.Listen, "127.0.0.1:9187"},
		{"timezone", c.API.Timezone, time.UTC},
		{"api keys", len(c.API.Keys), 0},
		{"log.format", c.Log.Format, "json"},
		{"log.level", c.Log.Level, slog.LevelInfo},
		{"webhooks", len(c.Webhooks), 0},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	for i, name := range []string{"coupon", "customer", "order", "product"} {
		r := c.Resources[i]
		if r.Name != name || r.Schema != "public" || r.Table != name+"s" || r.DeletedPayload != DeletedPayloadKey {
			t.Errorf("default resource %d = %+v", i, r)
		}
	}
}

// TestSpecExample loads the example of SPEC §2 as it is written there.
func TestSpecExample(t *testing.T) {
	env := envOf(map[string]string{
		"DATABASE_URL":       "postgres://walhook:pw@db.internal:5432/shop?sslmode=require",
		"WC_CONSUMER_SECRET": "cs_" + strings.Repeat("ab", 20),
		"ORDER_HOOK_SECRET":  "order-secret",
	})
	c, err := Load(filepath.Join("testdata", "good", "spec.yaml"), env)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Postgres.URL.Reveal(); got != "postgres://walhook:pw@db.internal:5432/shop?sslmode=require" {
		t.Errorf("postgres.url = %q", got)
	}
	if c.Source != "https://shop.example.com/" {
		t.Errorf("source = %q", c.Source)
	}
	if r, ok := c.Resource("customer"); !ok || !reflect.DeepEqual(r.ExcludeColumns, []string{"password_hash"}) || r.Line != 9 {
		t.Errorf("customer resource = %+v, %v", r, ok)
	}
	if len(c.API.Keys) != 1 || c.API.Keys[0].Permissions != PermissionReadWrite ||
		c.API.Keys[0].ConsumerSecret.Reveal() != "cs_"+strings.Repeat("ab", 20) {
		t.Errorf("api keys = %+v", c.API.Keys)
	}
	want := []Webhook{{
		ID:          1,
		Name:        "Order updated",
		Status:      webhook.StatusActive,
		Topic:       topics.Topic{Resource: "order", Event: "updated"},
		DeliveryURL: "https://hooks.example.com/orders",
		Secret:      "order-secret",
		Signature:   webhook.SignatureWooCommerce,
		Filter:      `row.status == "completed" && old.status != "completed"`,
		Line:        24,
	}}
	if !reflect.DeepEqual(c.Webhooks, want) {
		t.Errorf("webhooks = %+v, want %+v", c.Webhooks, want)
	}
}

func TestTypedValues(t *testing.T) {
	src := `
postgres:
  url: host=db.internal user=walhook dbname=shop
  slot: shop_slot
  publication: shop_pub
  state_schema: _walhook
  status_interval: 1m
source: http://shop.example.com/store
default_secret: fallback
resources:
  order: { table: sales.orders, exclude_columns: [notes, internal_ref], deleted_payload: old_row }
  line_item: { table: order_items }
delivery:
  timeout: 1m30s
  max_failures: 0
  disable_after: 0s
  concurrency: 256
  allow_private_networks: true
  allow_cidrs: [10.1.0.0/16, 192.168.1.7, "fd00::/8", 10.2.3.4/8]
  coalesce: none
  coalesce_max: 50
  shutdown_grace: 0s
  retry:
    attempts: 10
    backoff: 100ms
    max_backoff: 2s
    retry_after_cap: 0s
    parked_backoff: 30s
    parked_max_backoff: 168h
    probe_interval: 200ms
    probe_max_interval: 5s
  park_limit:
    rows: 5
    bytes: 512KiB
http:
  listen: ":8443"
  tls_cert: cert.pem
  tls_key: key.pem
  pprof: true
api:
  timezone: Europe/Paris
  keys:
    - consumer_key: ck_0123456789abcdef0123456789abcdef01234567
      consumer_secret: cs_0123456789abcdef0123456789abcdef01234567
      permissions: read
log:
  format: text
  level: WARN
webhooks:
  - id: 42
    name: "2024"
    status: disabled
    topic: line_item.deleted
    delivery_url: http://127.0.0.1:8080/hook?x=1
    signature: standard-webhooks
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  - id: 43
    status: paused
    topic: action.points_awarded
    delivery_url: https://hooks.example.com/points
`
	c := mustParse(t, src, noEnv)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Postgres: Postgres{
			URL:            "host=db.internal user=walhook dbname=shop",
			Slot:           "shop_slot",
			Publication:    "shop_pub",
			StateSchema:    "_walhook",
			StatusInterval: time.Minute,
		},
		Source:        "http://shop.example.com/store/",
		DefaultSecret: "fallback",
		Resources: []Resource{
			{Name: "order", Schema: "sales", Table: "orders", ExcludeColumns: []string{"notes", "internal_ref"}, DeletedPayload: DeletedPayloadOldRow, Line: 11},
			{Name: "line_item", Schema: "public", Table: "order_items", DeletedPayload: DeletedPayloadKey, Line: 12},
		},
		Delivery: Delivery{
			Timeout:              90 * time.Second,
			MaxFailures:          0,
			DisableAfter:         0,
			Concurrency:          256,
			AllowPrivateNetworks: true,
			AllowCIDRs: []netip.Prefix{
				netip.MustParsePrefix("10.1.0.0/16"),
				netip.MustParsePrefix("192.168.1.7/32"),
				netip.MustParsePrefix("fd00::/8"),
				netip.MustParsePrefix("10.0.0.0/8"),
			},
			Coalesce:      CoalesceNone,
			CoalesceMax:   50,
			ShutdownGrace: 0,
			Retry: Retry{
				Attempts:         10,
				Backoff:          100 * time.Millisecond,
				MaxBackoff:       2 * time.Second,
				RetryAfterCap:    0,
				ParkedBackoff:    30 * time.Second,
				ParkedMaxBackoff: 168 * time.Hour,
				ProbeInterval:    200 * time.Millisecond,
				ProbeMaxInterval: 5 * time.Second,
			},
			ParkLimit:           ParkLimit{Rows: 5, Bytes: 512 << 10},
			PayloadQueryTimeout: 5 * time.Second,
		},
		HTTP: HTTP{Listen: ":8443", TLSCert: "cert.pem", TLSKey: "key.pem", Pprof: true},
		API: API{
			Timezone: paris,
			Keys: []APIKey{{
				ConsumerKey:    "ck_0123456789abcdef0123456789abcdef01234567",
				ConsumerSecret: "cs_0123456789abcdef0123456789abcdef01234567",
				Permissions:    PermissionRead,
			}},
		},
		Log: Log{Format: "text", Level: slog.LevelWarn},
		Webhooks: []Webhook{
			{
				ID: 42, Name: "2024", Status: webhook.StatusDisabled,
				Topic:       topics.Topic{Resource: "line_item", Event: "deleted"},
				DeliveryURL: "http://127.0.0.1:8080/hook?x=1",
				Secret:      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
				Signature:   webhook.SignatureStandardWebhooks,
				Line:        50,
			},
			{
				ID: 43, Status: webhook.StatusPaused,
				Topic:       topics.Topic{Resource: "action", Event: "points_awarded"},
				DeliveryURL: "https://hooks.example.com/points",
				Secret:      "fallback",
				Signature:   webhook.SignatureWooCommerce,
				Line:        57,
			},
		},
	}
	if c.API.Timezone.String() != "Europe/Paris" {
		t.Errorf("timezone = %v", c.API.Timezone)
	}
	c.API.Timezone = paris // *time.Location values do not compare deeply
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1", 1},
		{"268435456", 256 << 20},
		{"256MiB", 256 << 20},
		{"64MB", 64e6},
		{"1GiB", 1 << 30},
		{"512KiB", 512 << 10},
		{"2 gib", 2 << 30},
		{"10kb", 10e3},
		{"100B", 100},
		{"1TiB", 1 << 40},
	}
	for _, tc := range tests {
		c := mustParse(t, minimal+"delivery: {park_limit: {bytes: "+tc.in+"}}\n", noEnv)
		if got := c.Delivery.ParkLimit.Bytes; got != tc.want {
			t.Errorf("bytes: %s = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5GiB", "1 PiB", "9223372036854775807KiB", "99999999999999999999"} {
		if _, err := size(bad); err == nil {
			t.Errorf("size(%q) succeeded", bad)
		}
	}
}

func TestExpand(t *testing.T) {
	env := envOf(map[string]string{
		"HOST":  "db.internal",
		"PORT":  "5433",
		"EMPTY": "",
		"YAML":  "x\n  injected: true",
	})
	tests := []struct {
		in, want string
		problems []string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}", want: "db.internal"},
		{in: "postgres://${HOST}:${PORT}/shop", want: "postgres://db.internal:5433/shop"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${HOST:-fallback}", want: "db.internal"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${MISSING:-}", want: ""},
		{in: "${MISSING:-${HOST}}", want: "db.internal"},
		{in: "${HOST:-${MISSING}}", want: "db.internal"}, // an unused default is not expanded
		{in: "${MISSING:-a:b-c}", want: "a:b-c"},
		{in: "$$", want: "$"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "pa$$word", want: "pa$word"},
		{in: "pa$word", want: "pa$word"},
		{in: "cost $5", want: "cost $5"},
		{in: "trailing $", want: "trailing $"},
		{in: "${YAML}", want: "x\n  injected: true"},
		{in: "${MISSING}", problems: []string{"${MISSING} is not set"}},
		{in: "${A}/${B}", want: "/", problems: []string{"${A} is not set", "${B} is not set"}},
		{in: "${MISSING:-${ALSO_MISSING}}", problems: []string{"${ALSO_MISSING} is not set"}},
		{in: "${HOST", problems: []string{"${HOST has no closing }"}},
		{in: "${HOST:-x", problems: []string{"${HOST:- has no closing }"}},
		{in: "${}", problems: []string{"${ must be followed by a variable name (letters, digits and _, not starting with a digit); write $$ for a literal $"}},
		{in: "${HOST-x}", problems: []string{"${HOST must be followed by } or :-default}"}},
		{in: "${HOST:=x}", problems: []string{"${HOST must be followed by } or :-default}"}},
	}
	for _, tc := range tests {
		got, problems := expand(tc.in, env, plainValue)
		if len(tc.problems) == 0 && got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !reflect.DeepEqual(problems, tc.problems) {
			t.Errorf("expand(%q) problems = %q, want %q", tc.in, problems, tc.problems)
		}
	}
}

// TestExpandInFile checks that expansion applies to scalar values after
// parsing: a variable holding YAML stays one string value, and lines stay
// right.
func TestExpandInFile(t *testing.T) {
	env := envOf(map[string]string{
		"DATABASE_URL": "postgres://walhook:s3cret@db/shop",
		"NAME":         "Orders\nsecret: injected",
		"ID":           "7",
		"TIMEOUT":      "",
		"FLAG":         "true",
	})
	src := `postgres:
  url: ${DATABASE_URL}
source: "${SHOP:-https://shop.example.com}"
delivery:
  timeout: ${TIMEOUT:-2s}
  allow_private_networks: ${FLAG}
webhooks:
  - id: ${ID}
    name: ${NAME}
    topic: order.${EVENT:-created}
    delivery_url: https://hooks.example.com/$${literal}
    secret: ${SECRET:-pa$$word}
`
	c := mustParse(t, src, env)
	if c.Postgres.URL.Reveal() != "postgres://walhook:s3cret@db/shop" || c.Source != "https://shop.example.com/" ||
		c.Delivery.Timeout != 2*time.Second || !c.Delivery.AllowPrivateNetworks {
		t.Errorf("expanded config = %+v", c)
	}
	w := c.Webhooks[0]
	if w.ID != 7 || w.Name != "Orders\nsecret: injected" || w.Topic.String() != "order.created" ||
		w.DeliveryURL != "https://hooks.example.com/${literal}" || w.Secret.Reveal() != "pa$word" {
		t.Errorf("expanded webhook = %+v (secret %q)", w, w.Secret.Reveal())
	}
}

// TestKeysNotExpanded checks that ${VAR} in a key is left as it is.
func TestKeysNotExpanded(t *testing.T) {
	_, err := Parse("t.yaml", []byte(minimal+"${KEY}: 1\n"), noEnv)
	want := "t.yaml:5: ${KEY}: unknown key; known keys: postgres, source, default_secret, resources, delivery, http, api, log, webhooks"
	if err == nil || !strings.Contains(err.Error(), `["${KEY}"]: unknown key`) {
		t.Errorf("err = %v, want like %s", err, want)
	}
}

func TestMergeKeysAndExtensions(t *testing.T) {
	src := minimal + `x-hook: &hook
  topic: order.created
  delivery_url: https://hooks.example.com/orders
  secret: shared
  status: paused
webhooks:
  - <<: *hook
    id: 1
  - <<: *hook
    id: 2
    topic: order.deleted
    status: active
`
	c := mustParse(t, src, noEnv)
	if len(c.Webhooks) != 2 {
		t.Fatalf("webhooks = %+v", c.Webhooks)
	}
	a, b := c.Webhooks[0], c.Webhooks[1]
	if a.ID != 1 || a.Topic.String() != "order.created" || a.Status != webhook.StatusPaused || a.Secret.Reveal() != "shared" {
		t.Errorf("first = %+v", a)
	}
	if b.ID != 2 || b.Topic.String() != "order.deleted" || b.Status != webhook.StatusActive || b.DeliveryURL != "https://hooks.example.com/orders" {
		t.Errorf("second = %+v", b)
	}
}

func TestSelfMergeTerminates(t *testing.T) {
	src := minimal + "webhooks:\n  - &a {id: 1, <<: *a}\n"
	_, err := Parse("t.yaml", []byte(src), noEnv)
	if err == nil || !strings.Contains(err.Error(), "merges itself") {
		t.Errorf("err = %v, want a self-merge problem", err)
	}
}

func TestProblemError(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "w.yaml", Line: 3, Path: "delivery.timeout", Message: "bad"}, "w.yaml:3: delivery.timeout: bad"},
		{Problem{File: "w.yaml", Path: "source", Message: "bad"}, "w.yaml: source: bad"},
		{Problem{File: "w.yaml", Line: 1, Message: "bad"}, "w.yaml:1: bad"},
		{Problem{File: "w.yaml", Message: "the file is empty"}, "w.yaml: the file is empty"},
	}
	for _, tc := range tests {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.p, got, tc.want)
		}
	}
	ps := Problems{tests[0].p, tests[1].p}
	if got, want := ps.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Problems.Error() = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), noEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

// TestSecretRedaction checks every way a Secret could be printed.
func TestSecretRedaction(t *testing.T) {
	const value = "hunter2-very-secret"
	s := Secret(value)
	c := mustParse(t, minimal+"default_secret: "+value+"\nwebhooks: [{id: 1, topic: order.created, delivery_url: 'https://h.example.com/'}]\n", noEnv)

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("secret", "s", s, "hook", c.Webhooks[0].Secret, "any", any(s))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("secret", "s", s)
	js, err := json.Marshal(map[string]any{"s": s, "config": c})
	if err != nil {
		t.Fatal(err)
	}
	ys, err := yaml.Marshal(map[string]any{"s": s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":        fmt.Sprintf("%v", s),
		"%s":        fmt.Sprintf("%s", s),
		"%q":        fmt.Sprintf("%q", s),
		"%#v":       fmt.Sprintf("%#v", s),
		"%x":        fmt.Sprintf("%x", s),
		"%+v conf":  fmt.Sprintf("%+v", c),
		"%#v conf":  fmt.Sprintf("%#v", *c),
		"%v hooks":  fmt.Sprint(c.Webhooks),
		"slog":      logs.String(),
		"json":      string(js),
		"yaml":      string(ys),
		"String":    s.String(),
		"GoString":  s.GoString(),
		"LogValue":  s.LogValue().String(),
		"errorf %v": fmt.Errorf("wrap: %v", s).Error(),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("%s shows the secret: %s", name, out)
		}
	}
	for _, name := range []string{"%v", "%s", "%#v", "String", "GoString", "LogValue"} {
		if outputs[name] != redacted {
			t.Errorf("%s = %q, want %q", name, outputs[name], redacted)
		}
	}
	if !strings.Contains(logs.String(), `"s":"[redacted]"`) || !strings.Contains(string(js), `"s":"[redacted]"`) {
		t.Errorf("slog or json lack [redacted]: %s %s", logs.String(), js)
	}
	if s.Reveal() != value || c.DefaultSecret.Reveal() != value {
		t.Errorf("Reveal lost the value")
	}
}

// TestSecretsNeverInProblems checks that no problem message quotes a
// secret's value, whatever is wrong with it.
func TestSecretsNeverInProblems(t *testing.T) {
	const pw = "hunter2secret"
	tests := []string{
		"postgres:\n  url: postgres://walhook:" + pw + "@localhost:notaport/shop\nsource: https://s.example.com\n",
		"postgres:\n  url: postgres://walhook:" + pw + "@local host/shop\nsource: https://s.example.com\n",
		"postgres:\n  url: \"postgres://walhook:" + pw + "@localhost/shop?sslmode=bogus\"\nsource: https://s.example.com\n",
		"postgres:\n  url: \"postgres://walhook:" + pw + "@[::1/shop\"\nsource: https://s.example.com\n",
		"postgres:\n  url: \"host=localhost password=" + pw + " port=abc\"\nsource: https://s.example.com\n",
		"postgres:\n  url: \"host=localhost password='" + pw + "\"\nsource: https://s.example.com\n",
		"postgres:\n  url: \"host=localhost password=" + pw + " connect_timeout=" + pw + "\"\nsource: https://s.example.com\n",
		minimal + "webhooks: [{id: 1, topic: order.created, delivery_url: 'https://h.example.com/', signature: both, secret: " + pw + "}]\n",
		minimal + "default_secret: " + pw + "\nwebhooks: [{id: 1, topic: order.created, delivery_url: 'https://h.example.com/', signature: both}]\n",
		minimal + "api: {keys: [{consumer_key: ck_x, consumer_secret: " + pw + ", permissions: read}]}\n",
		minimal + "webhooks: [{id: 1, topic: order.created, delivery_url: 'https://u:" + pw + "@h.example.com:x/'}]\n",
		minimal + "webhooks: [{id: 1, topic: order.created, delivery_url: 'ftp://u:" + pw + "@h.example.com/'}]\n",
	}
	for _, src := range tests {
		_, err := Parse("t.yaml", []byte(src), noEnv)
		if err == nil {
			t.Errorf("no problem found in\n%s", src)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("problem quotes the secret: %v", err)
		}
	}
}

// TestExampleConfig loads config.example.yaml with an empty environment.
func TestExampleConfig(t *testing.T) {
	c, err := Load(filepath.Join("..", "config.example.yaml"), noEnv)
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if len(c.Webhooks) != 15 {
		t.Fatalf("config.example.yaml has %d webhooks, want 15", len(c.Webhooks))
	}
	seen := make(map[string]bool)
	actions := 0
	for _, w := range c.Webhooks {
		seen[w.Topic.String()] = true
		if w.Topic.IsAction() {
			actions++
		}
	}
	for _, r := range []string{"coupon", "customer", "order", "product"} {
		for _, e := range []string{topics.EventCreated, topics.EventUpdated, topics.EventDeleted} {
			if !seen[r+"."+e] {
				t.Errorf("config.example.yaml has no webhook for %s.%s", r, e)
			}
		}
	}
	if actions != 1 {
		t.Errorf("config.example.yaml has %d action webhooks, want 1", actions)
	}
	// Every key with its default: the example must equal Defaults() but
	// for what it sets on purpose.
	d := Defaults()
	if !reflect.DeepEqual(c.Delivery, d.Delivery) {
		t.Errorf("example delivery = %+v, want the defaults %+v", c.Delivery, d.Delivery)
	}
	if c.Postgres.Slot != d.Postgres.Slot || c.Postgres.StatusInterval != d.Postgres.StatusInterval ||
		c.HTTP != d.HTTP || c.Log != d.Log || c.API.Timezone.String() != "UTC" {
		t.Errorf("example does not show the defaults: %+v", c)
	}
}

func TestURLErrorsQuoteNothing(t *testing.T) {
	for _, s := range []string{"https://u:ab%zzcd@h.example.com/", "https://u:p@h.example.com:se%cret/", "postgres://u:ab%zzcd@h/db"} {
		var msg string
		if strings.HasPrefix(s, "postgres") {
			_, err := postgresURL(s)
			msg = fmt.Sprint(err)
		} else {
			_, err := httpURL(s)
			msg = fmt.Sprint(err)
		}
		if strings.Contains(msg, "zz") || strings.Contains(msg, "se%") || strings.Contains(msg, `"`) {
			t.Errorf("message for %s quotes it: %s", s, msg)
		}
	}
}
