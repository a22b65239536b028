// Package webhook holds the values that describe a webhook and its
// deliveries — its status, its signature scheme and the outcome of a
// delivery — as one typed definition each, shared by the configuration,
// the state schema, the dispatcher, the management API and the commands.
// The string values are the ones WooCommerce and walhook's metrics use.
package webhook

// Status is a webhook's status, as WooCommerce names them.
type Status string

// Webhook statuses.
const (
	// StatusActive delivers.
	StatusActive Status = "active"
	// StatusPaused delivers nothing; its events are settled without
	// sending (an operator's choice).
	StatusPaused Status = "paused"
	// StatusDisabled sends nothing and parks its events until it is
	// re-enabled (set after sustained failure, or by an operator).
	StatusDisabled Status = "disabled"
)

// Statuses are the valid statuses, in WooCommerce's order.
var Statuses = []Status{StatusActive, StatusPaused, StatusDisabled}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusPaused || s == StatusDisabled
}

// Signature is how deliveries are signed.
type Signature string

// Signature schemes.
const (
	// SignatureWooCommerce sends WooCommerce's X-WC-Webhook-* headers
	// with a base64 HMAC-SHA256 of the body (the default).
	SignatureWooCommerce Signature = "woocommerce"
	// SignatureStandardWebhooks adds the Standard Webhooks headers
	// (webhook-id, webhook-timestamp, webhook-signature) to WooCommerce's.
	SignatureStandardWebhooks Signature = "standard-webhooks"
	// SignatureBoth is the same as SignatureStandardWebhooks, kept for
	// configurations that name both schemes.
	SignatureBoth Signature = "both"
)

// Signatures are the valid signature schemes.
var Signatures = []Signature{SignatureWooCommerce, SignatureStandardWebhooks, SignatureBoth}

// StandardWebhooks reports whether deliveries carry the Standard Webhooks
// headers too.
func (s Signature) StandardWebhooks() bool {
	return s == SignatureStandardWebhooks || s == SignatureBoth
}

// Outcome is what became of a delivery, the outcome label of
// walhook_deliveries_total.
type Outcome string

// Delivery outcomes.
const (
	OutcomeSuccess Outcome = "success" // delivered (2xx, 301, 302)
	OutcomeFailed  Outcome = "failed"  // quick attempts spent, or a failed retry or probe of a parked delivery
	OutcomeRetried Outcome = "retried" // an attempt that failed and was tried again at once
	OutcomeParked  Outcome = "parked"  // written to the state schema for a later retry
	OutcomeDropped Outcome = "dropped" // a parked delivery removed by the park limit
	OutcomeSkipped Outcome = "skipped" // settled without sending: the webhook is paused or was removed
)

// Outcomes are every outcome, for metrics created at zero.
var Outcomes = []Outcome{OutcomeSuccess, OutcomeFailed, OutcomeRetried, OutcomeParked, OutcomeDropped, OutcomeSkipped}
