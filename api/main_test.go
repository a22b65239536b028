package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Test keys, one per permission.
var (
	keyRW = Key{ConsumerKey: "ck_" + strings.Repeat("a1", 20), ConsumerSecret: "cs_" + strings.Repeat("b2", 20), Permissions: PermissionReadWrite}
	keyR  = Key{ConsumerKey: "ck_" + strings.Repeat("c3", 20), ConsumerSecret: "cs_" + strings.Repeat("d4", 20), Permissions: PermissionRead}
	keyW  = Key{ConsumerKey: "ck_" + strings.Repeat("e5", 20), ConsumerSecret: "cs_" + strings.Repeat("f6", 20), Permissions: PermissionWrite}
)

// env is an API over a fresh state schema, served over TLS and plain HTTP.
type env struct {
	t       *testing.T
	store   *state.Store
	api     *API
	tls     *httptest.Server
	plain   *httptest.Server
	applied atomic.Int64
}

var siteTZ = time.FixedZone("UTC+3", 3*3600)

func newEnv(t *testing.T, mod ...func(*Options)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := state.Open(ctx, pgtest.NewDatabase(t), "walhook")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	e := &env{t: t, store: store}
	o := Options{
		Store:      store,
		Keys:       []Key{keyRW, keyR, keyW},
		Timezone:   siteTZ,
		ConfigFile: "/etc/walhook/walhook.yaml",
		Resources: func(name string) bool {
			return name == "order" || name == "product" || name == "customer" || name == "coupon"
		},
		CheckURL: func(_ context.Context, raw string) error {
			if strings.Contains(raw, "blocked.example") {
				return errors.New("blocked.example resolves to a private address")
			}
			return nil
		},
		Apply: func(context.Context) error { e.applied.Add(1); return nil },
	}
	for _, f := range mod {
		f(&o)
	}
	e.api = New(o)
	e.tls = httptest.NewTLSServer(e.api.Handler())
	t.Cleanup(e.tls.Close)
	e.plain = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.plain.Close)
	return e
}

// response is a finished request.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errCode returns the code of an error response.
func (r response) errCode(t *testing.T) (code, message string) {
	t.Helper()
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Status int `json:"status"`
		} `json:"data"`
	}
	r.json(t, &e)
	if e.Data.Status != r.status {
		t.Errorf("data.status = %d, HTTP status %d", e.Data.Status, r.status)
	}
	return e.Code, e.Message
}

// do sends a request over TLS with Basic credentials of keyRW. A body that
// is a string is sent as is, anything else as JSON.
func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	return e.doAs(keyRW, method, path, body)
}

func (e *env) doAs(k Key, method, path string, body any) response {
	e.t.Helper()
	req := e.newRequest(e.tls, method, path, body)
	if k.ConsumerKey != "" {
		req.SetBasicAuth(k.ConsumerKey, k.ConsumerSecret)
	}
	return e.send(e.tls.Client(), req)
}

func (e *env) newRequest(srv *httptest.Server, method, path string, body any) *http.Request {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

func (e *env) send(c *http.Client, req *http.Request) response {
	e.t.Helper()
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// hook is a webhook as the API answers it.
type hook struct {
	ID              int64    `json:"id"`
	Name            string   `json:"name"`
	Status          string   `json:"status"`
	Topic           string   `json:"topic"`
	Resource        string   `json:"resource"`
	Event           string   `json:"event"`
	Hooks           []string `json:"hooks"`
	DeliveryURL     string   `json:"delivery_url"`
	Secret          *string  `json:"secret"`
	DateCreated     string   `json:"date_created"`
	DateCreatedGMT  string   `json:"date_created_gmt"`
	DateModified    string   `json:"date_modified"`
	DateModifiedGMT string   `json:"date_modified_gmt"`
	Links           struct {
		Self       []link `json:"self"`
		Collection []link `json:"collection"`
	} `json:"_links"`
}

// create makes an API webhook and returns it.
func (e *env) create(name, topic string) hook {
	e.t.Helper()
	r := e.do("POST", "/wp-json/wc/v3/webhooks", map[string]any{"name": name, "topic": topic, "delivery_url": "https://hooks.example.com/" + name})
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: %d %s", name, r.status, r.body)
	}
	var h hook
	r.json(e.t, &h)
	return h
}

// configWebhook declares a webhook as the configuration file would.
func (e *env) configWebhook(id int64, name string, status webhook.Status) state.Webhook {
	e.t.Helper()
	w, err := e.store.SyncConfigWebhook(context.Background(), state.Webhook{
		ID: id, Name: name, Topic: "order.updated", DeliveryURL: "https://hooks.example.com/config",
		Signature: "woocommerce", DefinitionHash: "h-" + name, Status: status,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *env) count() int {
	e.t.Helper()
	all, err := e.store.Webhooks(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(all)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
