package api

import (
	"net/http"

	"github.com/walhook/walhook/webhook"
)

// The discovery documents clients probe before calling the API: the REST
// index (/wp-json/) and the wc/v3 namespace index (/wp-json/wc/v3). Both
// are public, as in WordPress, and describe only what walhook serves.

type routeDoc struct {
	Namespace string        `json:"namespace"`
	Methods   []string      `json:"methods"`
	Endpoints []endpointDoc `json:"endpoints"`
	Links     *selfLinks    `json:"_links,omitempty"`
}

type endpointDoc struct {
	Methods []string          `json:"methods"`
	Args    map[string]argDoc `json:"args"`
}

type argDoc struct {
	Type     string   `json:"type,omitempty"`
	Required bool     `json:"required"`
	Default  any      `json:"default,omitempty"`
	Enum     []string `json:"enum,omitempty"`
}

type selfLinks struct {
	Self []link `json:"self"`
}

var (
	readMethods  = []string{"GET"}
	writeMethods = []string{"POST", "PUT", "PATCH"}

	contextArg  = argDoc{Type: "string", Default: "view", Enum: []string{contextView, contextEdit}}
	webhookArgs = map[string]argDoc{
		"name":         {Type: "string"},
		"status":       {Type: "string", Enum: statusNames(webhook.Statuses)},
		"topic":        {Type: "string"},
		"delivery_url": {Type: "string"},
		"secret":       {Type: "string"},
	}
)

func collectionArgs() map[string]argDoc {
	return map[string]argDoc{
		"context":         contextArg,
		"page":            {Type: "integer", Default: 1},
		"per_page":        {Type: "integer", Default: 10},
		"search":          {Type: "string"},
		"after":           {Type: "string"},
		"before":          {Type: "string"},
		"modified_after":  {Type: "string"},
		"modified_before": {Type: "string"},
		"dates_are_gmt":   {Type: "boolean"},
		"exclude":         {Type: "array"},
		"include":         {Type: "array"},
		"offset":          {Type: "integer"},
		"order":           {Type: "string", Default: "desc", Enum: []string{"asc", "desc"}},
		"orderby":         {Type: "string", Default: "date", Enum: orderbyValues},
		"status":          {Type: "string", Default: "all", Enum: append([]string{"all"}, statusNames(webhook.Statuses)...)},
	}
}

func withRequired(args map[string]argDoc, names ...string) map[string]argDoc {
	out := make(map[string]argDoc, len(args))
	for k, v := range args {
		out[k] = v
	}
	for _, n := range names {
		a := out[n]
		a.Required = true
		out[n] = a
	}
	return out
}

func (a *API) routes(r *http.Request) map[string]routeDoc {
	self := func(route string) *selfLinks { return &selfLinks{Self: []link{{Href: restURL(r, route)}}} }
	return map[string]routeDoc{
		"/wc/v3": {
			Namespace: "wc/v3", Methods: readMethods,
			Endpoints: []endpointDoc{{Methods: readMethods, Args: map[string]argDoc{"namespace": {Default: "wc/v3"}, "context": contextArg}}},
			Links:     self("/wc/v3"),
		},
		"/wc/v3/webhooks": {
			Namespace: "wc/v3", Methods: []string{"GET", "POST"},
			Endpoints: []endpointDoc{
				{Methods: readMethods, Args: collectionArgs()},
				{Methods: []string{"POST"}, Args: withRequired(webhookArgs, "topic", "delivery_url")},
			},
			Links: self("/wc/v3/webhooks"),
		},
		"/wc/v3/webhooks/(?P<id>[\\d]+)": {
			Namespace: "wc/v3", Methods: []string{"GET", "POST", "PUT", "PATCH", "DELETE"},
			Endpoints: []endpointDoc{
				{Methods: readMethods, Args: map[string]argDoc{"id": {Type: "integer"}, "context": contextArg}},
				{Methods: writeMethods, Args: webhookArgs},
				{Methods: []string{"DELETE"}, Args: map[string]argDoc{"id": {Type: "integer"}, "force": {Type: "boolean", Default: false}}},
			},
		},
		"/wc/v3/webhooks/batch": {
			Namespace: "wc/v3", Methods: writeMethods,
			Endpoints: []endpointDoc{{Methods: writeMethods, Args: map[string]argDoc{
				"create": {Type: "array"}, "update": {Type: "array"}, "delete": {Type: "array"},
			}}},
			Links: self("/wc/v3/webhooks/batch"),
		},
	}
}

func (a *API) serveNamespace(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"namespace": "wc/v3",
		"routes":    a.routes(r),
		"_links":    map[string]any{"up": []link{{Href: restURL(r, "/")}}},
	})
}

func (a *API) serveIndex(w http.ResponseWriter, r *http.Request) {
	home := requestScheme(r) + "://" + r.Host
	writeJSON(w, http.StatusOK, map[string]any{
		"name":           "walhook",
		"description":    "WooCommerce-compatible webhooks from PostgreSQL logical replication",
		"url":            home,
		"home":           home,
		"namespaces":     []string{"wc/v3"},
		"authentication": map[string]any{},
		"routes":         a.routes(r),
		"_links":         map[string]any{"help": []link{{Href: "https://woocommerce.github.io/woocommerce-rest-api-docs/"}}},
	})
}

// statusNames returns the statuses as strings, for the index's enums.
func statusNames(ss []webhook.Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}
