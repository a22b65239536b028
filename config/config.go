// Package config reads walhook's YAML configuration strictly and returns
// typed, validated values.
//
// Decoding walks the yaml.Node tree itself rather than using
// yaml.Decoder.KnownFields, so that one pass reports every problem (an
// unknown key, a wrong type, a missing required field, a duplicate key, a
// value out of range) with its YAML line and key path. ${VAR} and
// ${VAR:-default} are expanded in each scalar value after parsing, so line
// numbers stay right and a variable cannot inject YAML. Secrets are held in
// the Secret type, which never prints its value, and no message quotes one.
//
// Top-level keys starting with "x-" are ignored, as in Compose files: they
// can hold anchors for YAML merge keys (<<: *defaults).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // api.timezone must load on hosts without a zoneinfo database

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// Config is a validated walhook configuration.
type Config struct {
	Postgres Postgres
	// Source is sent as X-WC-Webhook-Source: an http or https URL that
	// always ends with "/".
	Source string
	// DefaultSecret is the HMAC secret of webhooks that set none; empty
	// when not configured.
	DefaultSecret Secret
	// Resources map resource names to tables, in file order; the four core
	// resources (coupon, customer, order, product on public.coupons,
	// public.customers, public.orders, public.products) when the file has
	// no resources key.
	Resources []Resource
	Delivery  Delivery
	HTTP      HTTP
	API       API
	Log       Log
	// Webhooks are the webhooks declared in the file, in file order.
	Webhooks []Webhook
}

// Postgres is the database walhook streams from and keeps its state in.
type Postgres struct {
	// URL is a libpq URL or keyword/value connection string.
	URL Secret
	// Slot is the logical replication slot (pgoutput); default "walhook".
	Slot string
	// Publication is the publication streamed; default "walhook".
	Publication string
	// StateSchema is the schema of walhook's own tables; default "walhook".
	StateSchema string
	// StatusInterval is the time between standby status updates; default
	// 10s, from 1s to 60s.
	StatusInterval time.Duration
}

// Resource maps a resource name (the first part of a topic) to a table.
type Resource struct {
	// Name is the resource's key under resources, e.g. "order".
	Name string
	// Schema and Table name the table; Schema is "public" when the
	// configuration gives a table name alone.
	Schema, Table string
	// ExcludeColumns are columns never put in a payload.
	ExcludeColumns []string
	// DeletedPayload is what a deleted event carries: "key" (the key
	// columns, the default) or "old_row" (needs REPLICA IDENTITY FULL).
	DeletedPayload string
	// PayloadQuery, when set, builds the body of created and updated
	// events: SQL taking $1, an array of the resource's keys, and
	// returning (key, json or jsonb document) rows. Empty: the body is the
	// row image from the WAL.
	PayloadQuery string
	// Line is the YAML line of the resource's key; 0 for a default resource.
	Line int
}

// Deleted payload kinds.
const (
	DeletedPayloadKey    = "key"
	DeletedPayloadOldRow = "old_row"
)

// Delivery configures how webhooks are delivered.
type Delivery struct {
	// Timeout bounds one delivery attempt; default 5s, from 100ms to 5m.
	Timeout time.Duration
	// MaxFailures is the number of consecutive failed deliveries a webhook
	// may have; one more disables it, once DisableAfter has also passed.
	// Default 5.
	MaxFailures int
	// DisableAfter is how long a webhook must have gone without a
	// successful delivery before failures beyond MaxFailures disable it;
	// default 1h. Zero disables on the count alone, as WooCommerce does.
	DisableAfter time.Duration
	// Concurrency is the number of deliveries in flight per webhook;
	// default 8, from 1 to 256.
	Concurrency int
	// AllowPrivateNetworks lets webhooks reach loopback, private and
	// link-local addresses; default false.
	AllowPrivateNetworks bool
	// AllowCIDRs are networks webhooks may reach even when private
	// networks are not allowed.
	AllowCIDRs []netip.Prefix
	// Coalesce is "transaction" (the default: one delivery per row, topic
	// and transaction, with the row's last state) or "none".
	Coalesce string
	// CoalesceMax is the most changes a transaction may have to be
	// coalesced; bigger transactions are delivered change by change, so
	// memory stays bounded. Default 10000.
	CoalesceMax int
	// ShutdownGrace is how long in-flight deliveries may finish on
	// shutdown; default 10s.
	ShutdownGrace time.Duration
	Retry         Retry
	// ParkLimit bounds the deliveries parked for one webhook.
	ParkLimit ParkLimit
	// PayloadQueryTimeout bounds one run of a resource's payload_query
	// (its statement_timeout); default 5s. A query that times out is
	// retried: routing waits, nothing is lost.
	PayloadQueryTimeout time.Duration
}

// Coalesce modes.
const (
	CoalesceTransaction = "transaction"
	CoalesceNone        = "none"
)

// Retry configures the retries of a failed delivery.
type Retry struct {
	// Attempts is the number of quick attempts in memory per delivery
	// before it is parked; default 3, from 1 to 10.
	Attempts int
	// Backoff is the wait before the first quick retry, doubled (with
	// jitter) after each; default 500ms.
	Backoff time.Duration
	// MaxBackoff caps the quick retries' wait; default 10s.
	MaxBackoff time.Duration
	// RetryAfterCap is the longest Retry-After honoured; default 60s.
	RetryAfterCap time.Duration
	// ParkedBackoff is the wait before the first retry of a parked
	// delivery; default 1m.
	ParkedBackoff time.Duration
	// ParkedMaxBackoff caps the wait between retries of a parked
	// delivery; default 1h.
	ParkedMaxBackoff time.Duration
	// ProbeInterval is the wait before the first probe of a receiver that
	// is down (its oldest parked delivery tried again), doubled after each
	// failed probe; default 1s.
	ProbeInterval time.Duration
	// ProbeMaxInterval caps the wait between probes; default 30s.
	ProbeMaxInterval time.Duration
}

// ParkLimit bounds the parked deliveries of one webhook; beyond it the
// oldest are dropped.
type ParkLimit struct {
	// Rows is the most deliveries parked; default 100000.
	Rows int64
	// Bytes is the most payload bytes parked; default 256 MiB.
	Bytes int64
}

// HTTP configures the server of /metrics, /healthz, /readyz and the API.
type HTTP struct {
	// Listen is a host:port; default "127.0.0.1:9187".
	Listen string
	// TLSCert and TLSKey are PEM files; both or neither. Empty: plain HTTP.
	TLSCert, TLSKey string
	// Pprof serves /debug/pprof/; default false.
	Pprof bool
}

// API configures the management API, which is off when Keys is empty.
type API struct {
	Keys []APIKey
	// Timezone is the site's time zone, for date_created and the like;
	// default UTC.
	Timezone *time.Location
}

// APIKey is a WooCommerce REST API key pair.
type APIKey struct {
	// ConsumerKey is "ck_" and 40 lower-case hex digits.
	ConsumerKey string
	// ConsumerSecret is "cs_" and 40 lower-case hex digits.
	ConsumerSecret Secret
	// Permissions is "read", "write" or "read_write".
	Permissions string
}

// API key permissions.
const (
	PermissionRead      = "read"
	PermissionWrite     = "write"
	PermissionReadWrite = "read_write"
)

// Log configures walhook's logs.
type Log struct {
	// Format is "json" (the default) or "text".
	Format string
	// Level is the least level logged; default info.
	Level slog.Level
}

// Webhook is a webhook declared in the configuration.
type Webhook struct {
	// ID is the webhook's stable id, > 0 and unique.
	ID int64
	// Name is the webhook's name; "" lets the registry name it.
	Name string
	// Status is "active" (the default), "paused" or "disabled".
	Status webhook.Status
	// Topic is what the webhook receives, valid for Config.Resources.
	Topic topics.Topic
	// DeliveryURL is an absolute http or https URL with a host.
	DeliveryURL string
	// Secret is the HMAC key; Config.DefaultSecret when the webhook sets
	// none.
	Secret Secret
	// Signature is "woocommerce" (the default), "standard-webhooks" or
	// "both".
	Signature webhook.Signature
	// Filter is a CEL expression (see package filter) the webhook's events
	// must satisfy to be delivered; "" delivers every event. It compiled
	// when the file was loaded.
	Filter string
	// Line is the YAML line of the webhook's entry, for messages.
	Line int
}

// Resource returns the resource named name, if configured.
func (c *Config) Resource(name string) (Resource, bool) {
	i := slices.IndexFunc(c.Resources, func(r Resource) bool { return r.Name == name })
	if i < 0 {
		return Resource{}, false
	}
	return c.Resources[i], true
}

// Defaults returns the configuration used for every key a file leaves out.
// Its Postgres.URL and Source are empty: a file must set them.
func Defaults() *Config {
	return &Config{
		Postgres: Postgres{
			Slot:           "walhook",
			Publication:    "walhook",
			StateSchema:    "walhook",
			StatusInterval: 10 * time.Second,
		},
		Resources: []Resource{
			{Name: "coupon", Schema: "public", Table: "coupons", DeletedPayload: DeletedPayloadKey},
			{Name: "customer", Schema: "public", Table: "customers", DeletedPayload: DeletedPayloadKey},
			{Name: "order", Schema: "public", Table: "orders", DeletedPayload: DeletedPayloadKey},
			{Name: "product", Schema: "public", Table: "products", DeletedPayload: DeletedPayloadKey},
		},
		Delivery: Delivery{
			Timeout:       5 * time.Second,
			MaxFailures:   5,
			DisableAfter:  time.Hour,
			Concurrency:   8,
			Coalesce:      CoalesceTransaction,
			CoalesceMax:   10000,
			ShutdownGrace: 10 * time.Second,
			Retry: Retry{
				Attempts:         3,
				Backoff:          500 * time.Millisecond,
				MaxBackoff:       10 * time.Second,
				RetryAfterCap:    time.Minute,
				ParkedBackoff:    time.Minute,
				ParkedMaxBackoff: time.Hour,
				ProbeInterval:    time.Second,
				ProbeMaxInterval: 30 * time.Second,
			},
			ParkLimit:           ParkLimit{Rows: 100000, Bytes: 256 << 20},
			PayloadQueryTimeout: 5 * time.Second,
		},
		HTTP: HTTP{Listen: "127.0.0.1:9187"},
		API:  API{Timezone: time.UTC},
		Log:  Log{Format: "json", Level: slog.LevelInfo},
	}
}

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 1 << 20

// Load reads and validates the configuration file at path, expanding
// ${VAR} and ${VAR:-default} with lookupEnv (os.LookupEnv in production).
// A file that cannot be opened is a wrapped os error; a file with problems
// is a Problems error listing them all. Only a regular file of at most
// MaxFileBytes is read: a device, a FIFO or a directory is refused without
// reading from it (or blocking on it).
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := ReadRegularFile(path, MaxFileBytes)
	var fe *FileError
	if errors.As(err, &fe) {
		return nil, Problems{{File: path, Message: fe.Problem}}
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, data, lookupEnv)
}

// FileError is a file ReadRegularFile refuses to read.
type FileError struct {
	Path    string
	Problem string // e.g. "is not a regular file (a character device)"
}

func (e *FileError) Error() string { return "config: " + e.Path + ": " + e.Problem }

// ReadRegularFile reads the file at path, which must be a regular file of
// at most max bytes; anything else is a *FileError, found without reading
// from the file. O_NONBLOCK keeps the open of a FIFO from waiting for a
// writer; it changes nothing for a regular file. Configuration files, TLS
// certificates and keys are read with it.
func ReadRegularFile(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	tooBig := &FileError{Path: path, Problem: fmt.Sprintf("is larger than %d bytes (%s), more than such a file needs", max, formatSize(max))}
	switch mode := info.Mode(); {
	case !mode.IsRegular():
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("is not a regular file (%s)", fileKind(mode))}
	case info.Size() > max:
		return nil, tooBig
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if int64(len(data)) > max { // it grew while being read
		return nil, tooBig
	}
	return data, nil
}

// formatSize writes n bytes in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + " " + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// fileKind names the kind of file mode describes.
func fileKind(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&os.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&os.ModeSocket != 0:
		return "a socket"
	case mode&os.ModeCharDevice != 0:
		return "a character device"
	case mode&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// Parse is Load on the bytes of a file; name is used in problems. The
// error, if any, is Problems.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := &decoder{
		file:      name,
		lookupEnv: lookupEnv,
		merged:    make(map[*yaml.Node][]entry),
		merging:   make(map[*yaml.Node]bool),
		keyLine:   make(map[*yaml.Node]int),
	}
	if lookupEnv == nil {
		d.lookupEnv = func(string) (string, bool) { return "", false }
	}
	c := Defaults()
	if root := d.document(data); root != nil {
		d.config(root, c)
	}
	if len(d.problems) > 0 {
		slices.SortStableFunc(d.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, d.problems
	}
	return c, nil
}

// yamlErrorRE matches yaml.v3's messages that carry a line.
var yamlErrorRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as one YAML document and returns its root node, or
// nil after recording why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.add(0, "", "the file is empty")
		} else {
			d.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.add(extra.Line, "", "holds more than one YAML document")
	case !errors.Is(err, io.EOF):
		d.yamlError(err)
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if isNull(resolve(root)) {
		d.add(0, "", "the file is empty")
		return nil
	}
	return root
}

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to
// its scanner) errors, which v3.0.1 reports with a 0-based line.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlError records a YAML syntax error with its line when it has one.
func (d *decoder) yamlError(err error) {
	msg := err.Error()
	if m := yamlErrorRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if slices.Contains(yamlParserProblems, m[2]) {
			line++
		}
		d.add(line, "", "invalid YAML: %s", m[2])
		return
	}
	d.add(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// Warnings returns what is allowed but risky in c, one sentence each, for
// `walhook check` to print and `walhook run` to log at start.
func (c *Config) Warnings() []string {
	var out []string
	if c.HTTP.Pprof && !loopbackListen(c.HTTP.Listen) {
		out = append(out, fmt.Sprintf("http.pprof serves /debug/pprof/ on %s, which is not a loopback address: whoever can reach it can read heap profiles, goroutine stacks and the command line, and load the CPU; listen on 127.0.0.1 or set pprof: false", c.HTTP.Listen))
	}
	return out
}

// loopbackListen reports whether the listen address addr only accepts
// connections from this host: its host is localhost or a loopback
// address. An empty host listens on every interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
