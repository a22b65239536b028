package api

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refEncode is RFC 3986 percent-encoding, built from the standard library
// independently of the package's rawURLEncode.
func refEncode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// refSign signs flat parameters by RFC 5849 §3.4 (one-legged: the key is
// the consumer secret and "&"), independently of the package's code.
func refSign(method, baseURL string, params [][2]string, secret, alg string) string {
	pairs := make([]string, 0, len(params))
	for _, p := range params {
		pairs = append(pairs, refEncode(p[0])+"="+refEncode(p[1]))
	}
	sort.Strings(pairs)
	base := strings.ToUpper(method) + "&" + refEncode(baseURL) + "&" + refEncode(strings.Join(pairs, "&"))
	h := sha256.New
	if alg == "HMAC-SHA1" {
		h = func() hash.Hash { return sha1.New() }
	}
	mac := hmac.New(h, []byte(secret+"&"))
	mac.Write([]byte(base))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestOAuthBaseString(t *testing.T) {
	tests := []struct {
		name, method, url, query, want string
	}{
		{
			name: "flat", method: "get", url: "http://127.0.0.1:8080/wp-json/wc/v3/webhooks",
			query: "search=a+b%26c&per_page=2&oauth_signature=zzz&oauth_nonce=n&oauth_consumer_key=ck",
			want:  "GET&http%3A%2F%2F127.0.0.1%3A8080%2Fwp-json%2Fwc%2Fv3%2Fwebhooks&oauth_consumer_key%3Dck%26oauth_nonce%3Dn%26per_page%3D2%26search%3Da%2520b%2526c",
		},
		{
			// PHP makes include an array; WooCommerce signs it as
			// include%5B0%5D=1, encoded once more.
			name: "array", method: "GET", url: "http://h/x",
			query: "include[]=1&include[]=2&a=~",
			want:  "GET&http%3A%2F%2Fh%2Fx&a%3D~%26include%255B0%255D%3D1%26include%255B1%255D%3D2",
		},
		{
			// A repeated key keeps its last value, as PHP's $_GET does.
			name: "repeated", method: "DELETE", url: "https://h/x",
			query: "force=false&oauth_nonce=n&force=true",
			want:  "DELETE&https%3A%2F%2Fh%2Fx&force%3Dtrue%26oauth_nonce%3Dn",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := oauthBaseString(tc.method, tc.url, parsePHPQuery(tc.query)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// oauthRequest describes a signed request for the plain-HTTP server.
type oauthRequest struct {
	method, path string
	query        [][2]string // signed, and sent in the URL
	key          Key
	alg          string
	nonce        string
	ts           int64
	jsDuplicate  bool   // send the query twice, as the JavaScript client does
	inHeader     bool   // send the oauth_* parameters in an Authorization header
	tamper       string // appended to the URL after signing
	body         any
}

func (e *env) signed(o oauthRequest) response {
	e.t.Helper()
	if o.alg == "" {
		o.alg = "HMAC-SHA256"
	}
	if o.ts == 0 {
		o.ts = time.Now().Unix()
	}
	if o.nonce == "" {
		o.nonce = fmt.Sprintf("n%d", time.Now().UnixNano())
	}
	oauth := [][2]string{
		{"oauth_consumer_key", o.key.ConsumerKey}, {"oauth_nonce", o.nonce},
		{"oauth_signature_method", o.alg}, {"oauth_timestamp", strconv.FormatInt(o.ts, 10)},
	}
	sig := refSign(o.method, e.plain.URL+o.path, append(append([][2]string{}, o.query...), oauth...), o.key.ConsumerSecret, o.alg)
	oauth = append(oauth, [2]string{"oauth_signature", sig})
	enc := func(ps [][2]string) string {
		var s []string
		for _, p := range ps {
			s = append(s, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
		}
		return strings.Join(s, "&")
	}
	var parts []string
	if len(o.query) > 0 {
		parts = append(parts, enc(o.query))
	}
	req := e.newRequest(e.plain, o.method, o.path, o.body)
	if o.inHeader {
		var h []string
		for _, p := range oauth {
			h = append(h, p[0]+`="`+refEncode(p[1])+`"`)
		}
		req.Header.Set("Authorization", "OAuth "+strings.Join(h, ", "))
	} else {
		parts = append(parts, enc(oauth))
	}
	if o.jsDuplicate && len(o.query) > 0 {
		parts = append(parts, enc(o.query))
	}
	if o.tamper != "" {
		parts = append(parts, o.tamper)
	}
	req.URL.RawQuery = strings.Join(parts, "&")
	return e.send(e.plain.Client(), req)
}

func TestOAuth(t *testing.T) {
	e := newEnv(t)
	h := e.create("oauth", "order.created")
	item := fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID)
	list := "/wp-json/wc/v3/webhooks"
	old := time.Now().Add(-16 * time.Minute).Unix()
	future := time.Now().Add(16 * time.Minute).Unix()
	tests := []struct {
		name   string
		req    oauthRequest
		status int
		code   string
		msg    string
	}{
		{name: "list", req: oauthRequest{method: "GET", path: list, key: keyRW}, status: 200},
		{name: "list with filters", req: oauthRequest{method: "GET", path: list, key: keyRW, query: [][2]string{{"per_page", "2"}, {"search", "o a&u*!'()~"}}}, status: 200},
		{name: "JavaScript client duplicates", req: oauthRequest{method: "GET", path: list, key: keyRW, query: [][2]string{{"per_page", "2"}, {"page", "1"}}, jsDuplicate: true}, status: 200},
		{name: "JavaScript client array", req: oauthRequest{method: "GET", path: list, key: keyR, query: [][2]string{{"include[0]", "1"}, {"include[1]", "2"}}, jsDuplicate: true}, status: 200},
		{name: "HMAC-SHA1", req: oauthRequest{method: "GET", path: item, key: keyRW, alg: "HMAC-SHA1"}, status: 200},
		{name: "Authorization header", req: oauthRequest{method: "GET", path: item, key: keyRW, inHeader: true, query: [][2]string{{"context", "edit"}}}, status: 200},
		{name: "create", req: oauthRequest{method: "POST", path: list, key: keyW, body: map[string]any{"topic": "order.deleted", "delivery_url": "https://hooks.example.com/o"}}, status: 201},
		{name: "update", req: oauthRequest{method: "PUT", path: item, key: keyRW, body: map[string]any{"status": "paused"}}, status: 200},
		{name: "tampered", req: oauthRequest{method: "GET", path: list, key: keyRW, query: [][2]string{{"per_page", "2"}}, tamper: "per_page=3"}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Invalid signature - provided signature does not match."},
		{name: "wrong secret", req: oauthRequest{method: "GET", path: list, key: Key{ConsumerKey: keyRW.ConsumerKey, ConsumerSecret: "cs_wrong"}}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Invalid signature - provided signature does not match."},
		{name: "unknown key", req: oauthRequest{method: "GET", path: list, key: Key{ConsumerKey: "ck_unknown", ConsumerSecret: "x"}}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Consumer key is invalid."},
		{name: "PLAINTEXT", req: oauthRequest{method: "GET", path: list, key: keyRW, alg: "PLAINTEXT"}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Invalid signature - signature method is invalid."},
		{name: "old", req: oauthRequest{method: "GET", path: list, key: keyRW, ts: old}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Invalid timestamp."},
		{name: "future", req: oauthRequest{method: "GET", path: list, key: keyRW, ts: future}, status: 401, code: "woocommerce_rest_authentication_error", msg: "Invalid timestamp."},
		{name: "read key writes", req: oauthRequest{method: "POST", path: list, key: keyR, body: map[string]any{"topic": "order.deleted", "delivery_url": "https://hooks.example.com/o"}}, status: 401, code: "woocommerce_rest_authentication_error", msg: "The API key provided does not have write permissions."},
		{name: "JS client delete with force", req: oauthRequest{method: "DELETE", path: item, key: keyRW, query: [][2]string{{"force", "true"}}, jsDuplicate: true}, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count()
			r := e.signed(tc.req)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, msg := r.errCode(t); code != tc.code || msg != tc.msg {
					t.Errorf("got %s %q", code, msg)
				}
				if e.count() != before {
					t.Errorf("a refused request changed the store")
				}
			}
		})
	}

	t.Run("replayed nonce", func(t *testing.T) {
		o := oauthRequest{method: "GET", path: list, key: keyRW, nonce: "once-only", ts: time.Now().Unix()}
		if r := e.signed(o); r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		r := e.signed(o)
		if code, msg := r.errCode(t); r.status != 401 || code != "woocommerce_rest_authentication_error" || msg != "Invalid nonce - nonce has already been used." {
			t.Errorf("replay: %d %s", r.status, r.body)
		}
		o.key = keyR // nonces are per key
		if r := e.signed(o); r.status != 200 {
			t.Errorf("other key, same nonce: %d %s", r.status, r.body)
		}
	})
	t.Run("missing parameters", func(t *testing.T) {
		r := e.send(e.plain.Client(), e.newRequest(e.plain, "GET", list+"?oauth_consumer_key="+keyRW.ConsumerKey+"&oauth_nonce=x", nil))
		if code, msg := r.errCode(t); r.status != 401 || code != "woocommerce_rest_authentication_missing_parameter" ||
			msg != "Missing OAuth parameters oauth_timestamp, oauth_signature, oauth_signature_method" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("form body parameters", func(t *testing.T) {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		params := [][2]string{{"topic", "product.created"}, {"delivery_url", "https://hooks.example.com/f"},
			{"oauth_consumer_key", keyRW.ConsumerKey}, {"oauth_nonce", "form-nonce"}, {"oauth_signature_method", "HMAC-SHA256"}, {"oauth_timestamp", ts}}
		sig := refSign("POST", e.plain.URL+list, params, keyRW.ConsumerSecret, "HMAC-SHA256")
		form := url.Values{"oauth_signature": {sig}}
		for _, p := range params {
			form.Set(p[0], p[1])
		}
		req := e.newRequest(e.plain, "POST", list, form.Encode())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if r := e.send(e.plain.Client(), req); r.status != 201 {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}

// TestOAuthKnownVector checks requests signed with signatures computed
// outside Go (openssl over the RFC 5849 base string
// GET&http%3A%2F%2F127.0.0.1%3A8080%2Fwp-json%2Fwc%2Fv3%2Fwebhooks&oauth_consumer_key%3D…%26per_page%3D2%26search%3Da%2520b%2526c).
func TestOAuthKnownVector(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(1700000000, 0) } })
	for _, tc := range []struct{ name, alg, sig string }{
		{"HMAC-SHA256", "HMAC-SHA256", url.QueryEscape("dhAkN+Prls/DWq9UXx+aMTIASZpN/l0WSOTeWd+0/uI=")},
		{"HMAC-SHA1", "HMAC-SHA1", url.QueryEscape("XVYgKiYlGB/pKzL7bukZ2Y6DNrY=")},
		// Sent unescaped, "+" reads as a space; WooCommerce turns it back.
		{"unescaped plus", "HMAC-SHA256", "dhAkN+Prls/DWq9UXx+aMTIASZpN/l0WSOTeWd+0/uI="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.api.auth.nonces = newNonceCache(maxNoncesPerKey, maxNonceBytesPerKey) // every case uses the vector's nonce
			req := e.newRequest(e.plain, "GET", "/wp-json/wc/v3/webhooks", nil)
			req.Host = "127.0.0.1:8080" // the host the vector was signed for
			req.URL.RawQuery = "per_page=2&search=a%20b%26c&oauth_consumer_key=" + keyRW.ConsumerKey +
				"&oauth_nonce=kn0wnV3ct0r&oauth_signature_method=" + tc.alg + "&oauth_timestamp=1700000000&oauth_signature=" + tc.sig
			if r := e.send(e.plain.Client(), req); r.status != 200 {
				t.Errorf("%d %s", r.status, r.body)
			}
			req.Host = "127.0.0.1:8081" // another host: another base string
			r := e.send(e.plain.Client(), req)
			if _, msg := r.errCode(t); r.status != 401 || msg != "Invalid signature - provided signature does not match." {
				t.Errorf("signed for another host: %d %s", r.status, r.body)
			}
		})
	}
}

func TestBasicAuth(t *testing.T) {
	e := newEnv(t)
	list := "/wp-json/wc/v3/webhooks"
	tests := []struct {
		name     string
		tls      bool
		user     string
		pass     string
		query    string
		status   int
		code     string
		msg      string
		wwwAuthn bool
	}{
		{name: "basic", tls: true, user: keyRW.ConsumerKey, pass: keyRW.ConsumerSecret, status: 200},
		{name: "query credentials", tls: true, query: "consumer_key=" + keyR.ConsumerKey + "&consumer_secret=" + keyR.ConsumerSecret, status: 200},
		{name: "query credentials win over basic", tls: true, user: keyRW.ConsumerKey, pass: "wrong", query: "consumer_key=" + keyR.ConsumerKey + "&consumer_secret=" + keyR.ConsumerSecret, status: 200},
		{name: "wrong secret", tls: true, user: keyRW.ConsumerKey, pass: "cs_wrong", status: 401, code: "woocommerce_rest_authentication_error", msg: "Consumer secret is invalid.", wwwAuthn: true},
		{name: "unknown key", tls: true, user: "ck_unknown", pass: "x", status: 401, code: "woocommerce_rest_cannot_view", msg: "Sorry, you cannot list resources."},
		{name: "none", tls: true, status: 401, code: "woocommerce_rest_cannot_view", msg: "Sorry, you cannot list resources."},
		{name: "basic over plain HTTP is ignored", user: keyRW.ConsumerKey, pass: keyRW.ConsumerSecret, status: 401, code: "woocommerce_rest_cannot_view"},
		{name: "query credentials over plain HTTP are ignored", query: "consumer_key=" + keyR.ConsumerKey + "&consumer_secret=" + keyR.ConsumerSecret, status: 401, code: "woocommerce_rest_cannot_view"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := e.plain
			if tc.tls {
				srv = e.tls
			}
			req := e.newRequest(srv, "GET", list+"?"+tc.query, nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			r := e.send(srv.Client(), req)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, msg := r.errCode(t); code != tc.code || (tc.msg != "" && msg != tc.msg) {
					t.Errorf("got %s %q", code, msg)
				}
			}
			if got := r.header.Get("WWW-Authenticate") != ""; got != tc.wwwAuthn {
				t.Errorf("WWW-Authenticate sent = %v", got)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t)
	h := e.create("perm", "order.created")
	item := fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID)
	create := map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com/p"}
	tests := []struct {
		name         string
		key          Key
		method, path string
		body         any
		status       int
		code, msg    string
	}{
		{"read key reads", keyR, "GET", item, nil, 200, "", ""},
		{"read key HEAD", keyR, "HEAD", item, nil, 200, "", ""},
		{"read key creates", keyR, "POST", "/wp-json/wc/v3/webhooks", create, 401, "woocommerce_rest_authentication_error", "The API key provided does not have write permissions."},
		{"read key updates", keyR, "PUT", item, map[string]any{"status": "paused"}, 401, "woocommerce_rest_authentication_error", "The API key provided does not have write permissions."},
		{"read key batches", keyR, "POST", "/wp-json/wc/v3/webhooks/batch", map[string]any{"delete": []any{h.ID}}, 401, "woocommerce_rest_authentication_error", "The API key provided does not have write permissions."},
		{"read key deletes", keyR, "DELETE", item + "?force=true", nil, 401, "woocommerce_rest_authentication_error", "The API key provided does not have write permissions."},
		{"write key reads", keyW, "GET", item, nil, 401, "woocommerce_rest_authentication_error", "The API key provided does not have read permissions."},
		{"write key lists", keyW, "GET", "/wp-json/wc/v3/webhooks", nil, 401, "woocommerce_rest_authentication_error", "The API key provided does not have read permissions."},
		{"anonymous get", Key{}, "GET", item, nil, 401, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."},
		{"anonymous create", Key{}, "POST", "/wp-json/wc/v3/webhooks", create, 401, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."},
		{"anonymous update", Key{}, "PUT", item, map[string]any{"status": "paused"}, 401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."},
		{"anonymous delete", Key{}, "DELETE", item + "?force=true", nil, 401, "woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource."},
		{"anonymous batch", Key{}, "POST", "/wp-json/wc/v3/webhooks/batch", map[string]any{"delete": []any{h.ID}}, 401, "woocommerce_rest_cannot_batch", "Sorry, you are not allowed to batch manipulate this resource."},
		{"write key updates", keyW, "PATCH", item, map[string]any{"status": "paused"}, 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := e.store.Webhook(t.Context(), h.ID)
			r := e.doAs(tc.key, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code == "" {
				return
			}
			if code, msg := r.errCode(t); code != tc.code || msg != tc.msg {
				t.Errorf("got %s %q", code, msg)
			}
			after, _ := e.store.Webhook(t.Context(), h.ID)
			if after.Revision != before.Revision || e.count() != 1 {
				t.Errorf("a refused request changed the store")
			}
		})
	}
}

func TestNonceCache(t *testing.T) {
	now := time.Unix(1700000000, 0)
	c := newNonceCache(2, 5)
	steps := []struct {
		key, nonce string
		forget     time.Time
		now        time.Time
		want       nonceResult
	}{
		{"k", "a", now.Add(time.Minute), now, nonceFresh},
		{"k", "a", now.Add(time.Minute), now, nonceReused},
		{"other", "a", now.Add(time.Minute), now, nonceFresh},
		{"k", "b", now.Add(time.Minute), now, nonceFresh},
		{"k", "c", now.Add(time.Minute), now, nonceFull},         // two per key: refuse rather than forget
		{"other", "bcdef", now.Add(time.Minute), now, nonceFull}, // five bytes per key
		{"other", "bcd", now.Add(time.Minute), now, nonceFresh},  // another key's budget is its own
		{"k", "b", now.Add(3 * time.Minute), now.Add(2 * time.Minute), nonceFresh},
		{"k", "a", now.Add(3 * time.Minute), now.Add(2 * time.Minute), nonceFresh}, // expired, usable again
		{"k", "b", now.Add(3 * time.Minute), now.Add(2 * time.Minute), nonceReused},
	}
	for i, s := range steps {
		if got := c.use(s.key, s.nonce, s.forget, s.now); got != s.want {
			t.Errorf("step %d: got %v, want %v", i, got, s.want)
		}
	}
	if n, b := c.usage("k"); n != 2 || b != 2 {
		t.Errorf("usage(k) = %d nonces, %d bytes; want 2, 2", n, b)
	}
}

func TestParsePHPQuery(t *testing.T) {
	tests := []struct{ query, want string }{
		{"a=1&b=2", "map[a:1 b:2]"},
		{"a=1&a=2", "map[a:2]"},
		{"a[]=1&a[]=2", "map[a:[1 2]]"},
		{"a%5B0%5D=1&a%5B1%5D=2&a%5B0%5D=3", "map[a:[3 2]]"},
		{"a[x]=1&a[y][]=2", "map[a:map[x:1 y:[2]]]"},
		{"a.b=1&c+d=2&e[=3", "map[a_b:1 c_d:2 e_:3]"},
		{"q=a+b%2Bc%zz", "map[q:a b+c%zz]"},
		{"=1&[]=2&&x", "map[x:]"},
		{"a=1&a[]=2", "map[a:[2]]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(parsePHPQuery(tc.query).toParams()); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.query, got, tc.want)
		}
	}
}
