// Package receiver verifies and receives the webhooks Vigie's CRM sync
// sends (Standard Webhooks v1, symmetric signatures): it checks the
// webhook-timestamp against a 5-minute tolerance, compares the
// webhook-signature's v1 entries in constant time with the HMAC-SHA256 of
// "id.timestamp.body" under each configured secret (several during a
// rotation), and drops a webhook-id it has already processed.
//
// It uses only the standard library so that it can be copied into any Go
// service. Handler is a ready http.Handler; Verifier and Dedup are its
// parts.
package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tolerance is how far webhook-timestamp may be from the receiver's clock.
const Tolerance = 5 * time.Minute

// Headers of a Standard Webhooks request.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a symmetric Standard Webhooks secret.
const secretPrefix = "whsec_"

// Verification errors.
var (
	// ErrSecret: a configured secret is not base64 ("whsec_" optional).
	ErrSecret = errors.New("receiver: invalid secret")
	// ErrMissingHeaders: webhook-id, webhook-timestamp or
	// webhook-signature is missing.
	ErrMissingHeaders = errors.New("missing webhook headers")
	// ErrTimestamp: webhook-timestamp is not a unix time in seconds.
	ErrTimestamp = errors.New("invalid webhook-timestamp")
	// ErrTooOld and ErrTooNew: the timestamp is outside the tolerance.
	ErrTooOld = errors.New("webhook timestamp too old")
	ErrTooNew = errors.New("webhook timestamp too new")
	// ErrNoMatch: no v1 signature matches any secret.
	ErrNoMatch = errors.New("no matching signature")
)

// Verifier checks Standard Webhooks v1 signatures.
type Verifier struct {
	keys [][]byte
	// Tolerance overrides the package's Tolerance when positive.
	Tolerance time.Duration
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
}

// NewVerifier accepts each secret, "whsec_" followed by base64 (the
// prefix is optional). Give the old and the new secret during a rotation.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrSecret)
	}
	v := &Verifier{}
	for i, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), secretPrefix))
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("%w: secret %d is not whsec_ followed by base64", ErrSecret, i+1)
		}
		v.keys = append(v.keys, key)
	}
	return v, nil
}

// Verify checks one webhook: id, timestamp and signature are the three
// headers' values, body the raw request body (as received, never
// re-encoded).
func (v *Verifier) Verify(id, timestamp, signature string, body []byte) error {
	if id == "" || timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := Tolerance
	if v.Tolerance > 0 {
		tol = v.Tolerance
	}
	switch age := now().Sub(time.Unix(ts, 0)); {
	case age > tol:
		return ErrTooOld
	case age < -tol:
		return ErrTooNew
	}
	expected := make([][]byte, len(v.keys))
	for i, key := range v.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(timestamp))
		mac.Write([]byte{'.'})
		mac.Write(body)
		expected[i] = mac.Sum(nil)
	}
	for _, entry := range strings.Fields(signature) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

// VerifyRequest is Verify with the headers of h.
func (v *Verifier) VerifyRequest(h http.Header, body []byte) error {
	return v.Verify(h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature), body)
}

// Dedup remembers processed webhook-ids. Vigie sends the same
// webhook-id for every attempt of a change, possibly hours apart, so ids
// are kept for TTL (a day by default), at most Max of them (the oldest
// are forgotten first). A production receiver keeps them in its
// database, in the transaction that applies the message.
type Dedup struct {
	// TTL is how long an id is remembered. Default 24h.
	TTL time.Duration
	// Max is the most ids remembered. Default 100000.
	Max int

	mu    sync.Mutex
	seen  map[string]time.Time
	order []string
}

// Seen records id and reports whether it was already recorded.
func (d *Dedup) Seen(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ttl, limit := d.TTL, d.Max
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if limit <= 0 {
		limit = 100000
	}
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	for len(d.order) > 0 {
		oldest := d.order[0]
		if t, ok := d.seen[oldest]; ok && now.Sub(t) < ttl && len(d.seen) < limit {
			break
		}
		delete(d.seen, oldest)
		d.order = d.order[1:]
	}
	if _, ok := d.seen[id]; ok {
		return true
	}
	d.seen[id] = now
	d.order = append(d.order, id)
	return false
}

// Message is a webhook's JSON body.
type Message struct {
	// Type is contact.upserted, contact.deleted, contact.unsubscribed,
	// segment.entered, segment.exited or consent.changed.
	Type string `json:"type"`
	// Timestamp is when the change happened (RFC 3339).
	Timestamp time.Time `json:"timestamp"`
	// Data is the type's payload (see the README).
	Data json.RawMessage `json:"data"`
}

// Handler receives webhooks: 204 for a new verified message (after
// OnMessage succeeded), 200 for a duplicate, 400 for a malformed request,
// 401 for a bad signature or timestamp, 500 when OnMessage fails (Vigie
// retries).
type Handler struct {
	// Verifier checks signatures. Required.
	Verifier *Verifier
	// OnMessage handles a new message. Required.
	OnMessage func(id string, m Message) error
	// Dedup drops repeated ids; nil: a new Dedup with its defaults.
	Dedup *Dedup
	// MaxBody is the largest accepted body. Default 1 MiB.
	MaxBody int64

	once sync.Once
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		if h.Dedup == nil {
			h.Dedup = &Dedup{}
		}
		if h.MaxBody <= 0 {
			h.MaxBody = 1 << 20
		}
	})
	if r.Method != http.MethodPost {
		reply(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	if err != nil || int64(len(body)) > h.MaxBody {
		reply(w, http.StatusBadRequest, "body unreadable or too large")
		return
	}
	switch err := h.Verifier.VerifyRequest(r.Header, body); {
	case errors.Is(err, ErrMissingHeaders), errors.Is(err, ErrTimestamp):
		reply(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		reply(w, http.StatusUnauthorized, err.Error())
		return
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil || m.Type == "" {
		reply(w, http.StatusBadRequest, "body is not a webhook message")
		return
	}
	id := r.Header.Get(HeaderID)
	if h.Dedup.Seen(id, time.Now()) {
		reply(w, http.StatusOK, "duplicate ignored")
		return
	}
	if err := h.OnMessage(id, m); err != nil {
		h.Dedup.forget(id)
		reply(w, http.StatusInternalServerError, "message not processed")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forget removes id, so that a retry of a message that failed is
// processed.
func (d *Dedup) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, id)
}

// reply writes a JSON body: {"error": msg}, or {"status": msg} for a
// success.
func reply(w http.ResponseWriter, status int, msg string) {
	key := "error"
	if status < 300 {
		key = "status"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{key: msg})
}
