package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a symmetric Standard Webhooks secret.
const secretPrefix = "whsec_"

// Secret sizes the specification allows, in bytes.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// Signer signs messages per Standard Webhooks v1 (symmetric): each
// secret gives one "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entry of
// the webhook-signature header, so that receivers holding either the old
// or the new secret verify during a rotation.
type Signer struct {
	keys [][]byte
}

// NewSigner accepts "whsec_" followed by the base64 of 24 to 64 random
// bytes (the prefix is optional), current secret first.
func NewSigner(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: at least one secret is required", ErrConfig)
	}
	s := &Signer{}
	for i, secret := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(secret), secretPrefix))
		if err != nil || len(key) < minSecretBytes || len(key) > maxSecretBytes {
			return nil, fmt.Errorf("%w: secret %d must be whsec_ followed by the base64 of %d to %d random bytes",
				ErrConfig, i+1, minSecretBytes, maxSecretBytes)
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// Sign returns the webhook-signature header value for a message.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	var b strings.Builder
	for i, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(stamp))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String()
}
