package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// maxBatch is how many objects one batch request may hold in total.
const maxBatch = 100

func (a *API) getItem(rq *request, id int64) (int, any, *apiError) {
	p := newParamReader(rq.params)
	context := p.enum("context", contextView, contextView, contextEdit)
	if err := p.err(); err != nil {
		return 0, nil, err
	}
	if id == 0 {
		return 0, nil, errInvalidID(http.StatusNotFound)
	}
	wh, err := a.store.Webhook(rq.Context(), id)
	if errors.Is(err, state.ErrNotFound) {
		return 0, nil, errInvalidID(http.StatusBadRequest)
	}
	if err != nil {
		return 0, nil, a.internal(rq.Context(), "read", err)
	}
	return http.StatusOK, a.shape(rq.Request, wh, context), nil
}

func (a *API) createItem(rq *request) (int, any, *apiError) {
	var missing []string
	for _, name := range []string{"topic", "delivery_url"} {
		if v, ok := rq.params[name]; !ok || v == nil {
			missing = append(missing, name)
		}
	}
	if missing != nil {
		return 0, nil, missingParams(missing)
	}
	wh, err := a.create(rq.Context(), rq.params)
	if err != nil {
		return 0, nil, err
	}
	a.apply(rq.Context())
	rq.w.Header().Set("Location", restURL(rq.Request, "/wc/v3/webhooks/"+strconv.FormatInt(wh.ID, 10)))
	return http.StatusCreated, a.shape(rq.Request, wh, contextEdit), nil
}

func (a *API) updateItem(rq *request, id int64) (int, any, *apiError) {
	wh, err := a.update(rq.Context(), id, rq.params)
	if err != nil {
		return 0, nil, err
	}
	a.apply(rq.Context())
	return http.StatusOK, a.shape(rq.Request, wh, contextEdit), nil
}

func (a *API) deleteItem(rq *request, id int64) (int, any, *apiError) {
	p := newParamReader(rq.params)
	force := p.boolean("force", false)
	if err := p.err(); err != nil {
		return 0, nil, err
	}
	wh, err := a.remove(rq.Context(), id, force)
	if err != nil {
		return 0, nil, err
	}
	a.apply(rq.Context())
	return http.StatusOK, a.shape(rq.Request, wh, contextEdit), nil
}

// fields are the writable properties of a webhook as sent.
type fields struct {
	name, topic, deliveryURL, secret, status string
}

// readFields reads the writable properties, which must be strings when
// sent, of text the state schema can store: valid UTF-8 without NUL.
func readFields(params map[string]any) (fields, *apiError) {
	p := newParamReader(params)
	var f fields
	f.name = p.text("name")
	f.topic = p.text("topic")
	f.deliveryURL = p.text("delivery_url")
	f.secret = p.text("secret")
	f.status = p.text("status")
	if p.has("filter") {
		// Refused rather than ignored: a webhook created without the
		// filter it was sent with would receive every event.
		p.bad("filter", "filter can only be set in the configuration file (webhooks[].filter); webhooks created through the API receive every event of their topic.")
	}
	return f, p.err()
}

// create validates and stores a new webhook as WooCommerce's create_item
// does: a sent id is refused, the status is always active and a missing
// secret is generated.
func (a *API) create(ctx context.Context, params map[string]any) (state.Webhook, *apiError) {
	f, perr := readFields(params)
	if perr != nil {
		return state.Webhook{}, perr
	}
	if id, ok := params["id"]; ok && !phpEmpty(id) {
		return state.Webhook{}, newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_exists", "Cannot create existing shop_webhook.")
	}
	if f.topic == "" || a.validTopic(f.topic) != nil {
		return state.Webhook{}, newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic is required and must be valid.")
	}
	if err := a.validURL(ctx, f.deliveryURL); err != nil {
		return state.Webhook{}, err
	}
	if f.name == "" {
		f.name = defaultName(a.now(), a.tz)
	}
	if f.secret == "" {
		s, err := newSecret()
		if err != nil {
			return state.Webhook{}, a.internal(ctx, "created", err)
		}
		f.secret = s
	}
	wh, err := a.store.CreateWebhook(ctx, state.Webhook{
		Name:        f.name,
		Topic:       f.topic,
		DeliveryURL: f.deliveryURL,
		Secret:      f.secret,
		Signature:   webhook.SignatureWooCommerce,
		Status:      webhook.StatusActive,
	})
	if err != nil {
		return wh, a.internal(ctx, "created", err)
	}
	return wh, nil
}

// update validates and applies a change as WooCommerce's update_item
// does: empty values are ignored. A webhook declared in the configuration
// file only takes a status.
func (a *API) update(ctx context.Context, id int64, params map[string]any) (state.Webhook, *apiError) {
	f, perr := readFields(params)
	if perr != nil {
		return state.Webhook{}, perr
	}
	cur, err := a.store.Webhook(ctx, id)
	if errors.Is(err, state.ErrNotFound) || id <= 0 {
		return cur, errInvalidID(http.StatusBadRequest)
	}
	if err != nil {
		return cur, a.internal(ctx, "read", err)
	}
	if aerr := a.readOnly(cur, f); aerr != nil {
		return cur, aerr
	}
	if f.topic != "" && a.validTopic(f.topic) != nil {
		return cur, newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic must be valid.")
	}
	if f.deliveryURL != "" && f.deliveryURL != cur.DeliveryURL {
		if aerr := a.validURL(ctx, f.deliveryURL); aerr != nil {
			return cur, aerr
		}
	}
	status := webhook.Status(strings.ToLower(f.status))
	if f.status != "" && !status.Valid() {
		return cur, newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_status", "Webhook status must be valid.")
	}
	wh, err := a.store.UpdateWebhook(ctx, id, func(w *state.Webhook) error {
		if aerr := a.readOnly(*w, f); aerr != nil { // the row may have changed since it was read
			return aerr
		}
		if f.name != "" {
			w.Name = f.name
		}
		if f.topic != "" {
			w.Topic = f.topic
		}
		if f.deliveryURL != "" {
			w.DeliveryURL = f.deliveryURL
		}
		if f.secret != "" {
			w.Secret = f.secret
		}
		if status != "" {
			w.Status = status
		}
		return nil
	})
	var aerr *apiError
	switch {
	case errors.As(err, &aerr):
		return wh, aerr
	case errors.Is(err, state.ErrNotFound):
		return wh, errInvalidID(http.StatusBadRequest)
	case err != nil:
		return wh, a.internal(ctx, "stored", err)
	}
	return wh, nil
}

// readOnly refuses a change to a configuration-declared webhook other
// than its status. Sending a field's current value is not a change, so a
// client may send back the object it read.
func (a *API) readOnly(cur state.Webhook, f fields) *apiError {
	if cur.Origin != state.OriginConfig {
		return nil
	}
	var changed []string
	if f.name != "" && f.name != cur.Name {
		changed = append(changed, "name")
	}
	if f.topic != "" && f.topic != cur.Topic {
		changed = append(changed, "topic")
	}
	if f.deliveryURL != "" && f.deliveryURL != cur.DeliveryURL {
		changed = append(changed, "delivery_url")
	}
	if f.secret != "" {
		changed = append(changed, "secret")
	}
	if changed == nil {
		return nil
	}
	return newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_read_only",
		"Webhook %d is declared in %s: only its status can be changed through the API; change %s in that file.",
		cur.ID, a.configFile, listWords(changed))
}

// remove deletes a webhook as WooCommerce's delete_item does: only with
// force, since webhooks have no trash.
func (a *API) remove(ctx context.Context, id int64, force bool) (state.Webhook, *apiError) {
	if !force {
		return state.Webhook{}, newError(http.StatusNotImplemented, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.")
	}
	cur, err := a.store.Webhook(ctx, id)
	if errors.Is(err, state.ErrNotFound) || id <= 0 {
		return cur, errInvalidID(http.StatusNotFound)
	}
	if err != nil {
		return cur, a.internal(ctx, "read", err)
	}
	if cur.Origin == state.OriginConfig {
		return cur, newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_read_only",
			"Webhook %d is declared in %s and cannot be deleted through the API; remove it from that file (or set its status to paused or disabled).",
			cur.ID, a.configFile)
	}
	wh, err := a.store.DeleteWebhook(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return wh, errInvalidID(http.StatusNotFound)
	}
	if err != nil {
		return wh, newError(http.StatusInternalServerError, "woocommerce_rest_cannot_delete", "The shop_webhook cannot be deleted.")
	}
	return wh, nil
}

// validTopic checks a topic's syntax and that its resource is configured.
// Besides WooCommerce's topics it accepts walhook's "<resource>.*".
func (a *API) validTopic(s string) error {
	t, err := topics.Parse(s)
	if err != nil {
		return err
	}
	return t.Validate(a.resources)
}

// validURL checks a delivery URL as wc_is_valid_url does (an http:// or
// https:// prefix and a well-formed URL with a host), then against the
// delivery URL policy.
func (a *API) validURL(ctx context.Context, s string) *apiError {
	bad := newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_delivery_url",
		"Webhook delivery URL must be a valid URL starting with http:// or https://.")
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return bad
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return bad
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return bad
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad
		}
	}
	if a.checkURL != nil {
		if err := a.checkURL(ctx, s); err != nil {
			return newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_delivery_url",
				"Webhook delivery URL is not allowed: %v.", err)
		}
	}
	return nil
}

// batchResult is a batch answer; only the non-empty keys are sent.
type batchResult struct {
	Create []any `json:"create,omitempty"`
	Update []any `json:"update,omitempty"`
	Delete []any `json:"delete,omitempty"`
}

// batchError is one failed object of a batch.
type batchError struct {
	ID    any       `json:"id"`
	Error errorBody `json:"error"`
}

// batch creates, then updates, then deletes, as WooCommerce's
// batch_items does, and answers 200 with each object's result.
func (a *API) batch(rq *request) (int, any, *apiError) {
	lists := make(map[string][]any, 3)
	problems := make(map[string]string)
	total := 0
	for _, name := range []string{"create", "update", "delete"} {
		v, ok := rq.params[name]
		if !ok || phpEmpty(v) {
			continue
		}
		items, ok := v.([]any)
		if !ok {
			problems[name] = name + " is not of type array."
			continue
		}
		lists[name] = items
		total += len(items)
	}
	if len(problems) > 0 {
		return 0, nil, invalidParams(problems)
	}
	if total > maxBatch {
		return 0, nil, newError(http.StatusRequestEntityTooLarge, "woocommerce_rest_request_entity_too_large",
			"Unable to accept more than %d items for this request.", maxBatch)
	}
	ctx := rq.Context()
	var out batchResult
	wrote := false
	for _, item := range lists["create"] {
		obj, ok := item.(map[string]any)
		if !ok {
			out.Create = append(out.Create, itemError(0, invalidParams(map[string]string{"create": "create[] is not of type object."})))
			continue
		}
		wh, err := a.create(ctx, obj)
		if err != nil {
			out.Create = append(out.Create, itemError(0, err))
			continue
		}
		wrote = true
		out.Create = append(out.Create, a.shape(rq.Request, wh, contextEdit))
	}
	for _, item := range lists["update"] {
		obj, _ := item.(map[string]any)
		var sentID any = 0
		id := int64(0)
		if obj != nil && obj["id"] != nil {
			sentID = obj["id"]
			id, _ = toInt(sentID)
		}
		if obj == nil {
			out.Update = append(out.Update, itemError(sentID, invalidParams(map[string]string{"update": "update[] is not of type object."})))
			continue
		}
		wh, err := a.update(ctx, id, obj)
		if err != nil {
			out.Update = append(out.Update, itemError(sentID, err))
			continue
		}
		wrote = true
		out.Update = append(out.Update, a.shape(rq.Request, wh, contextEdit))
	}
	for _, item := range lists["delete"] {
		id, _ := toInt(item)
		if id == 0 {
			continue // as WooCommerce: ids that are not positive integers are skipped
		}
		wh, err := a.remove(ctx, id, true)
		if err != nil {
			out.Delete = append(out.Delete, itemError(id, err))
			continue
		}
		wrote = true
		out.Delete = append(out.Delete, a.shape(rq.Request, wh, contextEdit))
	}
	if wrote {
		a.apply(ctx)
	}
	return http.StatusOK, out, nil
}

func itemError(id any, e *apiError) batchError {
	return batchError{ID: id, Error: e.body()}
}

// phpEmpty reports whether PHP's empty() holds for a parameter value.
func phpEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == "" || t == "0"
	case bool:
		return !t
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	default:
		s := fmt.Sprint(t)
		return s == "0" || s == "0.0"
	}
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
