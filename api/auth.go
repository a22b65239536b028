package api

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is one of OAuth 1.0a's signature methods.
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Key is a WooCommerce REST API key pair.
type Key struct {
	// ConsumerKey identifies the key, e.g. "ck_…".
	ConsumerKey string
	// ConsumerSecret is the key's secret, e.g. "cs_…".
	ConsumerSecret string
	// Permissions is "read" (GET, HEAD), "write" (POST, PUT, PATCH,
	// DELETE) or "read_write" (both).
	Permissions string
}

// Key permissions.
const (
	PermissionRead      = "read"
	PermissionWrite     = "write"
	PermissionReadWrite = "read_write"
)

// oauthWindow is how far an OAuth timestamp may be from now, and how long
// a nonce is remembered (WC_REST_Authentication's 15 minutes).
const oauthWindow = 15 * time.Minute

// Bounds of the remembered OAuth nonces. A nonce longer than
// maxNonceBytes is refused (clients send 32 to 64 characters). Each key
// has its own budget of maxNoncesPerKey nonces and maxNonceBytesPerKey
// bytes of them; when its budget is spent, that key's signed requests are
// refused with 429 until its nonces expire, rather than forgetting nonces
// that could then be replayed, and other keys are not affected.
const (
	maxNonceBytes       = 128
	maxNoncesPerKey     = 100_000
	maxNonceBytesPerKey = 4 << 20
)

const basicRealm = `Basic realm="WooCommerce API. Use a consumer key in the username field and a consumer secret in the password field."`

// authenticator checks credentials as WooCommerce's WC_REST_Authentication
// does.
type authenticator struct {
	keys   *keySet
	now    func() time.Time
	nonces *nonceCache
}

// credentials are what a request carries for authentication.
type credentials struct {
	query *phpArray // $_GET
	form  *phpArray // $_POST, nil unless the body is form-encoded
}

// authenticate returns the key that authenticated r, nil when r carries
// no credentials, or the error to answer.
//
// Over TLS, consumer_key and consumer_secret query parameters, else HTTP
// Basic credentials, are checked first. Otherwise (and over TLS when those
// named no known key) OAuth 1.0a one-legged signatures are checked.
func (a *authenticator) authenticate(r *http.Request, c credentials) (*Key, *apiError) {
	if r.TLS != nil {
		ck, _ := c.query.get("consumer_key").(string)
		cs, _ := c.query.get("consumer_secret").(string)
		if ck == "" || cs == "" {
			ck, cs, _ = r.BasicAuth()
		}
		if ck != "" && cs != "" {
			if k, ok := a.keys.lookup(ck); ok {
				if !hmac.Equal([]byte(k.ConsumerSecret), []byte(cs)) {
					e := errAuth("Consumer secret is invalid.")
					e.Header = http.Header{"Www-Authenticate": {basicRealm}}
					return nil, e
				}
				return &k, nil
			}
		}
	}
	return a.oauth(r, c)
}

var oauthRequired = []string{"oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature", "oauth_signature_method"}

func (a *authenticator) oauth(r *http.Request, c credentials) (*Key, *apiError) {
	params := oauthParams(r, c)
	var missing []string
	for _, name := range oauthRequired {
		if s, _ := params.get(name).(string); s == "" || s == "0" { // PHP's empty()
			missing = append(missing, name)
		}
	}
	switch {
	case len(missing) == len(oauthRequired):
		return nil, nil // not an OAuth request
	case len(missing) == 1:
		return nil, newError(http.StatusUnauthorized, "woocommerce_rest_authentication_missing_parameter", "Missing OAuth parameter %s", missing[0])
	case len(missing) > 1:
		return nil, newError(http.StatusUnauthorized, "woocommerce_rest_authentication_missing_parameter", "Missing OAuth parameters %s", strings.Join(missing, ", "))
	}
	str := func(name string) string { s, _ := params.get(name).(string); return s }

	k, ok := a.keys.lookup(str("oauth_consumer_key"))
	if !ok {
		return nil, errAuth("Consumer key is invalid.")
	}
	var h func() hash.Hash
	switch str("oauth_signature_method") {
	case "HMAC-SHA1":
		h = sha1.New
	case "HMAC-SHA256":
		h = sha256.New
	default:
		return nil, errAuth("Invalid signature - signature method is invalid.")
	}
	given := phpRawURLDecode(strings.ReplaceAll(str("oauth_signature"), " ", "+"))
	base := oauthBaseString(r.Method, requestBaseURL(r), params)
	mac := hmac.New(h, []byte(k.ConsumerSecret+"&"))
	mac.Write([]byte(base))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(given)) {
		return nil, errAuth("Invalid signature - provided signature does not match.")
	}

	now := a.now()
	ts, err := strconv.ParseInt(strings.TrimSpace(str("oauth_timestamp")), 10, 64)
	if err != nil || ts < now.Add(-oauthWindow).Unix() || ts > now.Add(oauthWindow).Unix() {
		return nil, errAuth("Invalid timestamp.")
	}
	nonce := str("oauth_nonce")
	if len(nonce) > maxNonceBytes {
		return nil, errAuth(fmt.Sprintf("Invalid nonce - nonce is longer than %d bytes.", maxNonceBytes))
	}
	// A request the key may not make is refused before its nonce is
	// remembered: it costs the key's nonce budget nothing.
	if aerr := allowed(&k, r.Method); aerr != nil {
		return nil, aerr
	}
	switch a.nonces.use(k.ConsumerKey, nonce, time.Unix(ts, 0).Add(oauthWindow), now) {
	case nonceReused:
		return nil, errAuth("Invalid nonce - nonce has already been used.")
	case nonceFull:
		e := newError(http.StatusTooManyRequests, "woocommerce_rest_too_many_requests", "Too many signed requests in the last 15 minutes; try again later.")
		e.Header = http.Header{"Retry-After": {"60"}}
		return nil, e
	}
	return &k, nil
}

// oauthParams merges the parameters WooCommerce signs: the query ($_GET),
// the form body ($_POST) over it, and the oauth_* parameters of an
// "Authorization: OAuth …" header over both.
func oauthParams(r *http.Request, c credentials) *phpArray {
	out := newPHPArray()
	for _, src := range []*phpArray{c.query, c.form, parseOAuthHeader(r.Header.Get("Authorization"))} {
		if src == nil {
			continue
		}
		for _, k := range src.keys {
			out.set(k, src.vals[k])
		}
	}
	return out
}

var oauthHeaderParam = regexp.MustCompile(`(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))`)

// parseOAuthHeader reads the oauth_* parameters of an Authorization
// header as WC_REST_Authentication::parse_header does.
func parseOAuthHeader(h string) *phpArray {
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "OAuth ") {
		return nil
	}
	out := newPHPArray()
	for _, m := range oauthHeaderParam.FindAllStringSubmatch(h, -1) {
		v := m[3]
		if v == "" {
			v = m[4]
		}
		out.set(m[1], phpURLDecode(v))
	}
	return out
}

// requestBaseURL is the URL WooCommerce signs: the site's scheme and host
// and the request's path, without the query. The scheme is https when the
// connection is TLS; the host is the request's Host.
func requestBaseURL(r *http.Request) string {
	return requestScheme(r) + "://" + r.Host + r.URL.EscapedPath()
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// oauthBaseString builds the signature base string exactly as
// WC_REST_Authentication::check_oauth_signature does: oauth_signature
// removed, top-level keys sorted bytewise, keys and values RFC 3986
// encoded, each "key=value" encoded again and the pairs joined with %26;
// nested arrays become key%5Bsub%5D pairs in their own order.
func oauthBaseString(method, baseURL string, params *phpArray) string {
	keys := make([]string, 0, len(params.keys))
	for _, k := range params.keys {
		if k != "oauth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = joinWithEquals(pairs, rawURLEncode(k), encodeValues(params.vals[k]))
	}
	return strings.ToUpper(method) + "&" + rawURLEncode(baseURL) + "&" + strings.Join(pairs, "%26")
}

// encodeValues RFC 3986 encodes a value, or every value of an array
// (keeping its keys), as wc_rest_urlencode_rfc3986 does.
func encodeValues(v any) any {
	a, ok := v.(*phpArray)
	if !ok {
		s, _ := v.(string)
		return rawURLEncode(s)
	}
	out := newPHPArray()
	for _, k := range a.keys {
		out.set(k, encodeValues(a.vals[k]))
	}
	return out
}

func joinWithEquals(pairs []string, key string, v any) []string {
	a, ok := v.(*phpArray)
	if !ok {
		s, _ := v.(string)
		return append(pairs, rawURLEncode(key+"="+s))
	}
	for _, k := range a.keys {
		pairs = joinWithEquals(pairs, key+"%5B"+k+"%5D", a.vals[k])
	}
	return pairs
}

// rawURLEncode is PHP's rawurlencode (RFC 3986: all but A-Z a-z 0-9 - _ . ~
// percent-encoded, upper-case hex).
func rawURLEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3 / 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// phpRawURLDecode is PHP's rawurldecode: "+" stays a plus.
func phpRawURLDecode(s string) string {
	return phpURLDecode(strings.ReplaceAll(s, "+", "%2B"))
}

// allowed checks a key's permissions for a request method, as
// WC_REST_Authentication::check_permissions does.
func allowed(k *Key, method string) *apiError {
	switch method {
	case http.MethodGet, http.MethodHead:
		if k.Permissions != PermissionRead && k.Permissions != PermissionReadWrite {
			return errAuth("The API key provided does not have read permissions.")
		}
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		if k.Permissions != PermissionWrite && k.Permissions != PermissionReadWrite {
			return errAuth("The API key provided does not have write permissions.")
		}
	case http.MethodOptions:
	default:
		return errAuth("Unknown request method.")
	}
	return nil
}

// nonceCache remembers OAuth nonces per key until their timestamp leaves
// the accepted window, within a budget per key.
type nonceCache struct {
	mu       sync.Mutex
	maxCount int // nonces remembered per key
	maxBytes int // bytes of nonces remembered per key
	keys     map[string]*keyNonces
}

// keyNonces are the nonces remembered for one key.
type keyNonces struct {
	seen    map[string]time.Time // nonce -> forget after
	byLimit expiryHeap
	bytes   int // the sum of the lengths of the nonces in seen
}

type nonceResult int

const (
	nonceFresh nonceResult = iota
	nonceReused
	nonceFull
)

// newNonceCache returns a cache remembering at most maxCount nonces and
// maxBytes bytes of them per key.
func newNonceCache(maxCount, maxBytes int) *nonceCache {
	return &nonceCache{maxCount: maxCount, maxBytes: maxBytes, keys: make(map[string]*keyNonces)}
}

// use records nonce for key until forget and reports whether it was
// fresh, or whether key's budget is spent.
func (c *nonceCache) use(key, nonce string, forget, now time.Time) nonceResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[key]
	if k == nil {
		k = &keyNonces{seen: make(map[string]time.Time)}
		c.keys[key] = k
	}
	for len(k.byLimit) > 0 && !k.byLimit[0].at.After(now) {
		e := heap.Pop(&k.byLimit).(expiry)
		if k.seen[e.id].Equal(e.at) {
			delete(k.seen, e.id)
			k.bytes -= len(e.id)
		}
	}
	if until, ok := k.seen[nonce]; ok && until.After(now) {
		return nonceReused
	}
	if len(k.seen) >= c.maxCount || k.bytes+len(nonce) > c.maxBytes {
		return nonceFull
	}
	k.seen[nonce] = forget
	k.bytes += len(nonce)
	heap.Push(&k.byLimit, expiry{id: nonce, at: forget})
	return nonceFresh
}

// usage returns how many nonces, and how many bytes of them, key has
// remembered.
func (c *nonceCache) usage(key string) (count, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.keys[key]; k != nil {
		return len(k.seen), k.bytes
	}
	return 0, 0
}

type expiry struct {
	id string
	at time.Time
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
