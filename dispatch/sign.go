package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"

	"github.com/walhook/walhook/state"
)

// DeliveryID returns the delivery id of the event at index in the
// transaction committed at commit, for webhook id: 32 hex characters, as
// WooCommerce's are, and the same on every attempt and every redelivery
// after a restart.
func DeliveryID(webhookID int64, commit state.LSN, index uint32) string {
	var in [20]byte
	binary.BigEndian.PutUint64(in[0:], uint64(webhookID))
	binary.BigEndian.PutUint64(in[8:], uint64(commit))
	binary.BigEndian.PutUint32(in[16:], index)
	sum := sha256.Sum256(in[:])
	return hex.EncodeToString(sum[:16])
}

// signer computes signatures with reusable HMAC states. It is not safe for
// concurrent use: each delivery lane owns one.
type signer struct {
	wc  hash.Hash // HMAC-SHA256 keyed with the secret, for X-WC-Webhook-Signature
	sw  hash.Hash // HMAC-SHA256 keyed with the decoded whsec_ secret, for webhook-signature
	sum []byte
}

func newSigner(secret string) *signer {
	s := &signer{wc: hmac.New(sha256.New, []byte(secret))}
	if key, err := StandardWebhooksKey(secret); err == nil {
		s.sw = hmac.New(sha256.New, key)
	}
	return s
}

// WooCommerce returns base64(HMAC-SHA256(body, secret)), the value of
// X-WC-Webhook-Signature.
func (s *signer) WooCommerce(body []byte) string {
	s.wc.Reset()
	s.wc.Write(body)
	s.sum = s.wc.Sum(s.sum[:0])
	return base64.StdEncoding.EncodeToString(s.sum)
}

// StandardWebhooks returns the webhook-signature value "v1,<base64>" over
// "<id>.<timestamp>.<body>", per the Standard Webhooks specification.
func (s *signer) StandardWebhooks(id string, timestamp int64, body []byte) string {
	if s.sw == nil {
		return ""
	}
	s.sw.Reset()
	s.sw.Write([]byte(id))
	s.sw.Write([]byte{'.'})
	s.sw.Write(strconv.AppendInt(nil, timestamp, 10))
	s.sw.Write([]byte{'.'})
	s.sw.Write(body)
	s.sum = s.sw.Sum(s.sum[:0])
	return "v1," + base64.StdEncoding.EncodeToString(s.sum)
}

// StandardWebhooksKey decodes a "whsec_<base64>" secret into its HMAC key.
func StandardWebhooksKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`a Standard Webhooks secret starts with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`a Standard Webhooks secret is "whsec_" followed by standard base64`)
	}
	return key, nil
}
