package api

import (
	"crypto/rand"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// dateLayout is WooCommerce's REST date format (no offset).
const dateLayout = "2006-01-02T15:04:05"

// webhookJSON is a webhook as WooCommerce's REST API v3 shows it, fields
// in its order.
type webhookJSON struct {
	ID              int64    `json:"id"`
	Name            string   `json:"name"`
	Status          string   `json:"status"`
	Topic           string   `json:"topic"`
	Resource        string   `json:"resource"`
	Event           string   `json:"event"`
	Hooks           []string `json:"hooks"`
	DeliveryURL     string   `json:"delivery_url"`
	Secret          *string  `json:"secret,omitempty"`
	DateCreated     string   `json:"date_created"`
	DateCreatedGMT  string   `json:"date_created_gmt"`
	DateModified    string   `json:"date_modified"`
	DateModifiedGMT string   `json:"date_modified_gmt"`
	Links           links    `json:"_links"`
}

type links struct {
	Self       []link `json:"self"`
	Collection []link `json:"collection"`
}

type link struct {
	Href string `json:"href"`
}

// Response contexts, as WordPress names them.
const (
	contextView = "view"
	contextEdit = "edit"
)

// shape returns w as the API shows it to r. In the edit context the secret
// of an API-created webhook is included; a webhook declared in the
// configuration file never shows its secret, which the state schema does
// not hold.
func (a *API) shape(r *http.Request, w state.Webhook, context string) webhookJSON {
	t, err := topics.Parse(w.Topic)
	if err != nil { // stored topics were validated; show what is there
		t = topics.Topic{Resource: w.Topic}
	}
	out := webhookJSON{
		ID:              w.ID,
		Name:            w.Name,
		Status:          string(w.Status),
		Topic:           w.Topic,
		Resource:        t.Resource,
		Event:           t.Event,
		Hooks:           a.hooks(t),
		DeliveryURL:     w.DeliveryURL,
		DateCreated:     w.DateCreated.In(a.tz).Format(dateLayout),
		DateCreatedGMT:  w.DateCreated.UTC().Format(dateLayout),
		DateModified:    w.DateModified.In(a.tz).Format(dateLayout),
		DateModifiedGMT: w.DateModified.UTC().Format(dateLayout),
		Links: links{
			Self:       []link{{Href: restURL(r, "/wc/v3/webhooks/"+strconv.FormatInt(w.ID, 10))}},
			Collection: []link{{Href: restURL(r, "/wc/v3/webhooks")}},
		},
	}
	if out.Hooks == nil {
		out.Hooks = []string{}
	}
	if context == contextEdit && w.Origin == state.OriginAPI {
		secret := w.Secret
		out.Secret = &secret
	}
	return out
}

// defaultHooks names what a topic listens to, in place of WooCommerce's
// action names: "walhook:<resource>:insert|update|delete" for a resource
// topic (all three for "<resource>.*"), and the message prefix itself for
// action.<name>, as WooCommerce lists the hook of an action topic.
func defaultHooks(t topics.Topic) []string {
	if t.IsAction() {
		return []string{t.Event}
	}
	if t.IsWildcard() {
		out := []string{}
		for _, e := range t.Events() {
			out = append(out, defaultHooks(e)...)
		}
		return out
	}
	op := map[string]string{topics.EventCreated: "insert", topics.EventUpdated: "update", topics.EventDeleted: "delete"}[t.Event]
	if op == "" {
		return []string{}
	}
	return []string{"walhook:" + t.Resource + ":" + op}
}

// restURL is the absolute URL of a REST route for r: the scheme of the
// connection (https when TLS) and the request's Host.
func restURL(r *http.Request, route string) string {
	return requestScheme(r) + "://" + r.Host + "/wp-json" + route
}

// defaultName is WooCommerce's name for a webhook created without one.
func defaultName(now time.Time, tz *time.Location) string {
	return "Webhook created on " + now.In(tz).Format("Jan 02, 2006 @ 03:04 PM")
}

// secretChars are wp_generate_password's characters with special and
// extra special characters.
const secretChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" +
	"!@#$%^&*()" + "-_ []{}<>~`+=,.;:/?|"

// newSecret returns a random 50-character secret, as
// wp_generate_password(50, true, true).
func newSecret() (string, error) {
	b := make([]byte, 50)
	max := big.NewInt(int64(len(secretChars)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b[i] = secretChars[n.Int64()]
	}
	return string(b), nil
}
