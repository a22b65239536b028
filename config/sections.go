package config

import (
	"errors"
	"math"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// This file maps each section of the file to its fields: the schema of
// the configuration, read top-down.

// config decodes the root mapping into c, then checks what spans sections.
func (d *decoder) config(root *yaml.Node, c *Config) {
	resourcesOK := true
	var hooks []hookKeys
	got := d.mapping("", root, []field{
		{name: "postgres", required: true, decode: func(p string, n *yaml.Node) { d.postgres(p, n, &c.Postgres) }},
		{name: "source", required: true, decode: scalarField(d, &c.Source, "a URL", sourceURL)},
		{name: "default_secret", decode: scalarField(d, &c.DefaultSecret, "a string", secretValue)},
		{name: "resources", decode: func(p string, n *yaml.Node) { c.Resources, resourcesOK = d.resources(p, n) }},
		{name: "delivery", decode: func(p string, n *yaml.Node) { d.delivery(p, n, &c.Delivery) }},
		{name: "http", decode: func(p string, n *yaml.Node) { d.http(p, n, &c.HTTP) }},
		{name: "api", decode: func(p string, n *yaml.Node) { d.api(p, n, &c.API) }},
		{name: "log", decode: func(p string, n *yaml.Node) { d.log(p, n, &c.Log) }},
		{name: "webhooks", decode: func(p string, n *yaml.Node) { c.Webhooks, hooks = d.webhooks(p, n) }},
		{name: "x-", prefix: true}, // extension keys, e.g. to hold anchors
	})
	d.checkWebhooks(c, hooks, got["default_secret"], resourcesOK)
}

func (d *decoder) postgres(path string, n *yaml.Node, pg *Postgres) {
	const slotRule = "1 to 63 lower-case letters, digits or _"
	d.mapping(path, n, []field{
		{name: "url", required: true, decode: scalarField(d, &pg.URL, "a connection string", postgresURL)},
		{name: "slot", decode: scalarField(d, &pg.Slot, "a string", matching(slotRE, slotRule))},
		{name: "publication", decode: scalarField(d, &pg.Publication, "a string", matching(slotRE, slotRule))},
		{name: "state_schema", decode: scalarField(d, &pg.StateSchema, "a string", stateSchema)},
		{name: "status_interval", decode: scalarField(d, &pg.StatusInterval, "a duration", duration(time.Second, time.Minute))},
	})
}

// resources decodes the resources mapping. ok is false when it is no
// mapping, so topics cannot be checked against it.
func (d *decoder) resources(path string, n *yaml.Node) (rs []Resource, ok bool) {
	es, ok := d.entries(path, n)
	if !ok {
		return nil, false
	}
	rs = make([]Resource, 0, len(es))
	tableLine := make(map[qualifiedTable]int)
	for _, e := range es {
		p := child(path, e.key)
		switch {
		case e.key == topics.ResourceAction:
			d.add(e.line, p, `"action" is reserved for action.<name> topics`)
		case !resourceRE.MatchString(e.key):
			d.add(e.line, p, "resource names must be lower-case letters, digits and _, starting with a letter")
		}
		r := Resource{Name: e.key, DeletedPayload: DeletedPayloadKey, Line: e.line}
		d.keyLine[e.value] = e.line
		var t qualifiedTable
		got := d.mapping(p, e.value, []field{
			{name: "table", required: true, decode: scalarField(d, &t, "a table name", parseTable)},
			{name: "exclude_columns", decode: func(p string, n *yaml.Node) {
				r.ExcludeColumns = listOf(d, p, n, "a column name", nonEmpty)
			}},
			{name: "deleted_payload", decode: scalarField(d, &r.DeletedPayload, "a string", oneOf(DeletedPayloadKey, DeletedPayloadOldRow))},
			{name: "payload_query", decode: scalarField(d, &r.PayloadQuery, "an SQL query", payloadQuery)},
		})
		if g := got["table"]; g.ok {
			r.Schema, r.Table = t.schema, t.table
			if first, dup := tableLine[t]; dup {
				d.add(g.line, child(p, "table"), "table %s.%s is already mapped at line %d", t.schema, t.table, first)
			} else {
				tableLine[t] = g.line
			}
		}
		rs = append(rs, r)
	}
	return rs, true
}

// qualifiedTable is a table with its schema.
type qualifiedTable struct{ schema, table string }

// parseTable parses "schema.table" or "table" (in schema public).
func parseTable(s string) (qualifiedTable, error) {
	schema, table, err := tableName(s)
	return qualifiedTable{schema, table}, err
}

func (d *decoder) delivery(path string, n *yaml.Node, dl *Delivery) {
	d.mapping(path, n, []field{
		{name: "timeout", decode: scalarField(d, &dl.Timeout, "a duration", duration(100*time.Millisecond, 5*time.Minute))},
		{name: "max_failures", decode: scalarField(d, &dl.MaxFailures, "an integer", integer(0, math.MaxInt))},
		{name: "disable_after", decode: scalarField(d, &dl.DisableAfter, "a duration", duration(0, 365*24*time.Hour))},
		{name: "concurrency", decode: scalarField(d, &dl.Concurrency, "an integer", integer(1, 256))},
		{name: "allow_private_networks", decode: scalarField(d, &dl.AllowPrivateNetworks, "true or false", boolean)},
		{name: "allow_cidrs", decode: func(p string, n *yaml.Node) {
			dl.AllowCIDRs = listOf(d, p, n, "a CIDR prefix", prefix)
		}},
		{name: "coalesce", decode: scalarField(d, &dl.Coalesce, "a string", oneOf(CoalesceTransaction, CoalesceNone))},
		{name: "coalesce_max", decode: scalarField(d, &dl.CoalesceMax, "an integer", integer(1, 1_000_000))},
		{name: "shutdown_grace", decode: scalarField(d, &dl.ShutdownGrace, "a duration", duration(0, 10*time.Minute))},
		{name: "retry", decode: func(p string, n *yaml.Node) { d.retry(p, n, &dl.Retry) }},
		{name: "park_limit", decode: func(p string, n *yaml.Node) { d.parkLimit(p, n, &dl.ParkLimit) }},
		{name: "payload_query_timeout", decode: scalarField(d, &dl.PayloadQueryTimeout, "a duration", duration(10*time.Millisecond, 5*time.Minute))},
	})
}

func (d *decoder) retry(path string, n *yaml.Node, r *Retry) {
	got := d.mapping(path, n, []field{
		{name: "attempts", decode: scalarField(d, &r.Attempts, "an integer", integer(1, 10))},
		{name: "backoff", decode: scalarField(d, &r.Backoff, "a duration", duration(time.Millisecond, time.Minute))},
		{name: "max_backoff", decode: scalarField(d, &r.MaxBackoff, "a duration", duration(time.Millisecond, time.Hour))},
		{name: "retry_after_cap", decode: scalarField(d, &r.RetryAfterCap, "a duration", duration(0, time.Hour))},
		{name: "parked_backoff", decode: scalarField(d, &r.ParkedBackoff, "a duration", duration(10*time.Millisecond, 24*time.Hour))},
		{name: "parked_max_backoff", decode: scalarField(d, &r.ParkedMaxBackoff, "a duration", duration(10*time.Millisecond, 7*24*time.Hour))},
		{name: "probe_interval", decode: scalarField(d, &r.ProbeInterval, "a duration", duration(10*time.Millisecond, time.Hour))},
		{name: "probe_max_interval", decode: scalarField(d, &r.ProbeMaxInterval, "a duration", duration(10*time.Millisecond, 24*time.Hour))},
	})
	d.ordered(path, got, "backoff", "max_backoff", r.Backoff, r.MaxBackoff)
	d.ordered(path, got, "parked_backoff", "parked_max_backoff", r.ParkedBackoff, r.ParkedMaxBackoff)
	d.ordered(path, got, "probe_interval", "probe_max_interval", r.ProbeInterval, r.ProbeMaxInterval)
}

// ordered reports when the duration lo (key loKey) exceeds hi (key hiKey),
// on the key that was set, unless one of them is already wrong.
func (d *decoder) ordered(path string, got map[string]given, loKey, hiKey string, lo, hi time.Duration) {
	gl, hasLo := got[loKey]
	gh, hasHi := got[hiKey]
	if lo <= hi || hasLo && !gl.ok || hasHi && !gh.ok {
		return
	}
	if hasHi {
		d.add(gh.line, child(path, hiKey), "must be at least %s (%s), not %s", loKey, formatDuration(lo), formatDuration(hi))
		return
	}
	d.add(gl.line, child(path, loKey), "must be at most %s (%s), not %s", hiKey, formatDuration(hi), formatDuration(lo))
}

func (d *decoder) parkLimit(path string, n *yaml.Node, pl *ParkLimit) {
	d.mapping(path, n, []field{
		{name: "rows", decode: scalarField(d, &pl.Rows, "an integer", integer[int64](1, math.MaxInt64))},
		{name: "bytes", decode: scalarField(d, &pl.Bytes, "a size", size)},
	})
}

func (d *decoder) http(path string, n *yaml.Node, h *HTTP) {
	got := d.mapping(path, n, []field{
		{name: "listen", decode: scalarField(d, &h.Listen, "host:port", listenAddr)},
		{name: "tls_cert", decode: scalarField(d, &h.TLSCert, "a file name", parseString)},
		{name: "tls_key", decode: scalarField(d, &h.TLSKey, "a file name", parseString)},
		{name: "pprof", decode: scalarField(d, &h.Pprof, "true or false", boolean)},
	})
	cert, key := got["tls_cert"], got["tls_key"]
	if cert.line > 0 && !cert.ok || key.line > 0 && !key.ok {
		return
	}
	switch {
	case h.TLSCert != "" && h.TLSKey == "":
		d.add(cert.line, child(path, "tls_key"), "is required when tls_cert is set")
	case h.TLSKey != "" && h.TLSCert == "":
		d.add(key.line, child(path, "tls_cert"), "is required when tls_key is set")
	}
}

func (d *decoder) api(path string, n *yaml.Node, a *API) {
	d.mapping(path, n, []field{
		{name: "keys", decode: func(p string, n *yaml.Node) { a.Keys = d.apiKeys(p, n) }},
		{name: "timezone", decode: scalarField(d, &a.Timezone, "a time zone name", location)},
	})
}

func (d *decoder) apiKeys(path string, n *yaml.Node) []APIKey {
	var keys []APIKey
	firstLine := make(map[string]int)
	d.sequence(path, n, func(p string, item *yaml.Node) {
		var k APIKey
		got := d.mapping(p, item, []field{
			{name: "consumer_key", required: true, decode: scalarField(d, &k.ConsumerKey, "a string", hexCredential("ck_"))},
			{name: "consumer_secret", required: true, decode: scalarField(d, &k.ConsumerSecret, "a string", secretOf(hexCredential("cs_")))},
			{name: "permissions", required: true, decode: scalarField(d, &k.Permissions, "a string", oneOf(PermissionRead, PermissionWrite, PermissionReadWrite))},
		})
		if g := got["consumer_key"]; g.ok {
			if first, dup := firstLine[k.ConsumerKey]; dup {
				d.add(g.line, child(p, "consumer_key"), "duplicate consumer_key (first at line %d)", first)
			} else {
				firstLine[k.ConsumerKey] = g.line
			}
		}
		keys = append(keys, k)
	})
	return keys
}

func (d *decoder) log(path string, n *yaml.Node, l *Log) {
	d.mapping(path, n, []field{
		{name: "format", decode: scalarField(d, &l.Format, "a string", oneOf("json", "text"))},
		{name: "level", decode: scalarField(d, &l.Level, "a string", logLevel)},
	})
}

// MaxWebhookID is the largest webhook id: WordPress post ids in practice,
// and far enough below PostgreSQL's bigint that the ids the management API
// hands out (the largest id so far plus one) never run out.
const MaxWebhookID = 1<<31 - 1

// hookKeys remembers where a webhook was found and which keys it set, for
// the checks that need the whole file.
type hookKeys struct {
	path string
	got  map[string]given
}

func (d *decoder) webhooks(path string, n *yaml.Node) ([]Webhook, []hookKeys) {
	var (
		hooks []Webhook
		keys  []hookKeys
	)
	d.sequence(path, n, func(p string, item *yaml.Node) {
		w := Webhook{Status: webhook.StatusActive, Signature: webhook.SignatureWooCommerce, Line: item.Line}
		got := d.mapping(p, item, []field{
			{name: "id", required: true, decode: scalarField(d, &w.ID, "an integer", integer[int64](1, MaxWebhookID))},
			{name: "name", decode: scalarField(d, &w.Name, "a string", webhookName)},
			{name: "status", decode: scalarField(d, &w.Status, "a string", oneOf(webhook.Statuses...))},
			{name: "topic", required: true, decode: scalarField(d, &w.Topic, "a topic", parseTopic)},
			{name: "delivery_url", required: true, decode: sensitiveField(d, &w.DeliveryURL, "a URL", deliveryURL, mayHoldSecret)},
			{name: "secret", decode: scalarField(d, &w.Secret, "a string", secretValue)},
			{name: "signature", decode: scalarField(d, &w.Signature, "a string", oneOf(webhook.Signatures...))},
			{name: "filter", decode: d.filterField(&w.Filter)},
		})
		hooks = append(hooks, w)
		keys = append(keys, hookKeys{path: p, got: got})
	})
	return hooks, keys
}

// checkWebhooks checks what a webhook shares with the rest of the file:
// unique ids, topics naming configured resources (when resourcesOK), the
// default secret, and the secret's shape for standard-webhooks signatures.
func (d *decoder) checkWebhooks(c *Config, hooks []hookKeys, defaultSecret given, resourcesOK bool) {
	configured := func(name string) bool { _, ok := c.Resource(name); return ok }
	firstLine := make(map[int64]int)
	for i, h := range hooks {
		w := &c.Webhooks[i]
		if g := h.got["id"]; g.ok {
			if first, dup := firstLine[w.ID]; dup {
				d.add(g.line, child(h.path, "id"), "duplicate id %d (first at line %d)", w.ID, first)
			} else {
				firstLine[w.ID] = g.line
			}
		}
		if g := h.got["delivery_url"]; g.ok {
			if u, err := httpURL(w.DeliveryURL); err == nil {
				if reason := refusedHost(u.Hostname(), c.Delivery.AllowPrivateNetworks, c.Delivery.AllowCIDRs); reason != "" {
					d.add(g.line, child(h.path, "delivery_url"), "host %s is %s, which deliveries refuse (set delivery.allow_private_networks or list it in delivery.allow_cidrs)", u.Hostname(), reason)
				}
			}
		}
		if g := h.got["topic"]; g.ok && resourcesOK {
			if err := w.Topic.Validate(configured); err != nil {
				d.add(g.line, child(h.path, "topic"), "%s", err)
			}
		}
		secret, hasSecret := h.got["secret"]
		if !hasSecret {
			switch {
			case defaultSecret.ok:
				w.Secret = c.DefaultSecret
			case defaultSecret.line == 0:
				d.add(w.Line, child(h.path, "secret"), "is required unless default_secret is set")
			}
		}
		sig := h.got["signature"]
		if !sig.ok || w.Signature == webhook.SignatureWooCommerce || w.Secret == "" || isWhsec(w.Secret.Reveal()) {
			continue
		}
		if hasSecret {
			d.add(secret.line, child(h.path, "secret"), `must be "whsec_" followed by standard base64 when signature is %q`, w.Signature)
		} else {
			d.add(sig.line, child(h.path, "signature"), `%q needs a secret of the form "whsec_" followed by standard base64, which default_secret is not`, w.Signature)
		}
	}
}

// parseTopic parses a topic, which must be valid UTF-8 to be stored.
func parseTopic(s string) (topics.Topic, error) {
	if !utf8.ValidString(s) {
		return topics.Topic{}, errors.New("must be valid UTF-8")
	}
	return topics.Parse(s)
}

// secretValue accepts any non-empty secret.
func secretValue(s string) (Secret, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	return Secret(s), nil
}

// secretOf turns a string parser into a Secret parser.
func secretOf(parse func(string) (string, error)) func(string) (Secret, error) {
	return func(s string) (Secret, error) {
		v, err := parse(s)
		return Secret(v), err
	}
}

// listOf decodes a list of scalars with parse, keeping the good ones.
func listOf[T any](d *decoder, path string, n *yaml.Node, want string, parse func(string) (T, error)) []T {
	var out []T
	d.sequence(path, n, func(p string, item *yaml.Node) {
		var v T
		before := len(d.problems)
		scalarField(d, &v, want, parse)(p, item)
		if len(d.problems) == before {
			out = append(out, v)
		}
	})
	return out
}
