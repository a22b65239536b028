// Package api serves walhook's management API: WooCommerce's REST API v3
// webhooks endpoint (/wp-json/wc/v3/webhooks), wire-compatible with
// WooCommerce's clients, over the webhooks of the state schema.
//
// Authentication is WooCommerce's: over TLS, HTTP Basic credentials or
// consumer_key/consumer_secret query parameters; otherwise OAuth 1.0a
// one-legged signatures, verified as WC_REST_Authentication verifies them.
// Errors use WordPress's {"code", "message", "data": {"status"}} shape.
//
// The handler uses no server-wide state beyond its nonce cache; the server
// that mounts it should set timeouts, for example
//
//	&http.Server{
//		ReadHeaderTimeout: 5 * time.Second,
//		ReadTimeout:       30 * time.Second,
//		WriteTimeout:      60 * time.Second,
//		IdleTimeout:       2 * time.Minute,
//		MaxHeaderBytes:    64 << 10,
//	}
//
// Request bodies are limited to 1 MiB and batches to 100 objects by the
// handler itself.
//
// Where walhook answers differently from WooCommerce, on purpose:
//   - X-WP-TotalPages is ceil(total/per_page) for every per_page;
//     WooCommerce answers 1 when per_page is 1, which stops clients that
//     follow it after the first page.
//   - orderby also takes include (the order of the include list) and slug
//     (sorted as title), which WooCommerce documents but its controller
//     refuses; modified_after, modified_before and dates_are_gmt filter as
//     on WooCommerce's other v3 collections.
//   - Link URLs leave out credentials (oauth_*, consumer_key,
//     consumer_secret) and repeated query pairs.
//   - hooks lists "walhook:<resource>:insert|update|delete" (or
//     Options.Hooks) instead of WordPress action names.
//   - Webhooks declared in the configuration file are listed but only
//     their status can change (woocommerce_rest_shop_webhook_read_only
//     otherwise); their secret is never shown.
//   - An invalid status on update is answered with
//     woocommerce_rest_shop_webhook_invalid_status (WordPress's schema check
//     would answer rest_invalid_param first); credentials are checked
//     before parameters.
//   - The scheme used for links and OAuth base strings is https exactly
//     when the connection is TLS; X-Forwarded-Proto is not trusted.
//   - OAuth nonces are kept in memory, per key, for 15 minutes after their
//     timestamp; a nonce is at most 128 bytes, and each key remembers at
//     most 100000 nonces and 4 MiB of them at once (beyond that, that
//     key's signed requests get 429 until some expire; other keys are not
//     affected). A request the key has no permission for is refused before
//     its nonce is remembered. A restart forgets them, but the ±15-minute
//     timestamp window still bounds replays.
package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// Options configure the API.
type Options struct {
	// Store holds the webhooks. Required.
	Store *state.Store
	// Keys are the accepted consumer key/secret pairs; API.SetKeys
	// replaces them. With none, the handler answers every request with
	// 404 rest_no_route: the API is off.
	Keys []Key
	// Timezone is the site's time zone for date_created, date_modified
	// and default names; nil means UTC.
	Timezone *time.Location
	// ConfigFile is the configuration file's name, given in errors about
	// webhooks declared there.
	ConfigFile string
	// Resources reports whether a resource is configured, for topic
	// validation; nil accepts every well-formed resource name.
	Resources func(name string) bool
	// Hooks lists what a topic listens to, shown as a webhook's "hooks";
	// nil shows "walhook:<resource>:insert|update|delete" (and, for
	// action.<name>, the name).
	Hooks func(t topics.Topic) []string
	// CheckURL applies the delivery URL policy (dispatch.CheckDestination
	// with the configured networks); nil allows every http(s) URL.
	CheckURL func(ctx context.Context, rawURL string) error
	// Apply makes stored changes take effect in the running pipeline (and
	// pings newly active webhooks). It is called after every successful
	// write, before the response is sent; an error is logged and the
	// response still reports the stored change. Nil does nothing.
	Apply func(ctx context.Context) error
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// API is the management API. Its handler is safe for concurrent use.
type API struct {
	store      *state.Store
	auth       *authenticator
	tz         *time.Location
	configFile string
	resources  func(string) bool
	hooks      func(topics.Topic) []string
	checkURL   func(context.Context, string) error
	applyFn    func(context.Context) error
	log        *slog.Logger
	now        func() time.Time
}

// New returns the API described by o.
func New(o Options) *API {
	a := &API{
		store:      o.Store,
		tz:         o.Timezone,
		configFile: o.ConfigFile,
		resources:  o.Resources,
		hooks:      o.Hooks,
		checkURL:   o.CheckURL,
		applyFn:    o.Apply,
		log:        o.Logger,
		now:        o.Now,
	}
	if a.tz == nil {
		a.tz = time.UTC
	}
	if a.configFile == "" {
		a.configFile = "the configuration file"
	}
	if a.resources == nil {
		a.resources = func(string) bool { return true }
	}
	if a.hooks == nil {
		a.hooks = defaultHooks
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.auth = &authenticator{keys: newKeySet(o.Keys), now: a.now, nonces: newNonceCache(maxNoncesPerKey, maxNonceBytesPerKey)}
	return a
}

// Handler serves everything under /wp-json/; mount it at "/wp-json/"
// without stripping the prefix.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serve) }

const webhooksPath = "/wp-json/wc/v3/webhooks"

// Errors for a request without credentials, per route, as WooCommerce's
// permission checks answer them.
var (
	denyList   = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
	denyView   = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")
	denyCreate = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources.")
	denyEdit   = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.")
	denyDelete = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource.")
	denyBatch  = newError(http.StatusUnauthorized, "woocommerce_rest_cannot_batch", "Sorry, you are not allowed to batch manipulate this resource.")
)

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if a.auth.keys.empty() {
		writeError(w, errNoRoute)
		return
	}
	path := r.URL.Path
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	write := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	switch {
	case path == "/wp-json" && read:
		a.serveIndex(w, r)
	case path == "/wp-json/wc/v3" && read:
		a.serveNamespace(w, r)
	case path == webhooksPath && read:
		a.handle(w, r, denyList, a.list)
	case path == webhooksPath && r.Method == http.MethodPost:
		a.handle(w, r, denyCreate, a.createItem)
	case path == webhooksPath+"/batch" && write:
		a.handle(w, r, denyBatch, a.batch)
	case strings.HasPrefix(path, webhooksPath+"/") && allDigits(path[len(webhooksPath)+1:]):
		id, err := strconv.ParseInt(path[len(webhooksPath)+1:], 10, 64)
		if err != nil {
			id = -1 // out of range: no such webhook
		}
		switch {
		case read:
			a.handle(w, r, denyView, func(rq *request) (int, any, *apiError) { return a.getItem(rq, id) })
		case write:
			a.handle(w, r, denyEdit, func(rq *request) (int, any, *apiError) { return a.updateItem(rq, id) })
		case r.Method == http.MethodDelete:
			a.handle(w, r, denyDelete, func(rq *request) (int, any, *apiError) { return a.deleteItem(rq, id) })
		default:
			writeError(w, errNoRoute)
		}
	default:
		writeError(w, errNoRoute)
	}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// request is an authenticated request with its parameters.
type request struct {
	*http.Request
	w      http.ResponseWriter
	query  *phpArray      // the query string as PHP's $_GET
	params map[string]any // query parameters overridden by body parameters
}

// handle reads and authenticates r, then runs h and answers its result.
// deny answers a request without credentials.
func (a *API) handle(w http.ResponseWriter, r *http.Request, deny *apiError, h func(*request) (int, any, *apiError)) {
	var body []byte
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, errTooBig)
				return
			}
			writeError(w, newError(http.StatusBadRequest, "rest_invalid_body", "The request body could not be read."))
			return
		}
	}
	rq := &request{Request: r, w: w, query: parsePHPQuery(r.URL.RawQuery)}
	var form *phpArray
	if isForm(r) {
		form = parsePHPQuery(string(body))
	}
	key, aerr := a.auth.authenticate(r, credentials{query: rq.query, form: form})
	if aerr == nil && key == nil {
		aerr = deny
	}
	if aerr == nil {
		aerr = allowed(key, r.Method)
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rq.params = rq.query.toParams()
	var bodyParams map[string]any
	if form != nil {
		bodyParams = form.toParams()
	} else if bodyParams, aerr = parseJSONBody(body); aerr != nil {
		writeError(w, aerr)
		return
	}
	for k, v := range bodyParams {
		rq.params[k] = v
	}
	status, v, aerr := h(rq)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, status, v)
}

// apply makes stored changes take effect. The change is stored whatever
// happens here, so a failure is logged, not answered.
func (a *API) apply(ctx context.Context) {
	if a.applyFn == nil {
		return
	}
	if err := a.applyFn(ctx); err != nil {
		a.log.ErrorContext(ctx, "api: apply webhook changes", slog.Any("error", err))
	}
}

// internal logs err and returns the error to answer for it.
func (a *API) internal(ctx context.Context, what string, err error) *apiError {
	a.log.ErrorContext(ctx, "api: "+what, slog.Any("error", err))
	return newError(http.StatusInternalServerError, "walhook_rest_internal_error", "The webhook could not be %s; see walhook's log.", what)
}
