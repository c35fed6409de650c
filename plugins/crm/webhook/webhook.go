// Package webhook is the generic webhook connector of Vigie's CRM sync:
// each change is POSTed as one JSON message signed per the Standard
// Webhooks specification v1 (headers webhook-id, webhook-timestamp,
// webhook-signature; HMAC-SHA256 with whsec_ secrets, one signature per
// secret during a rotation). The webhook-id is the same for every attempt
// of a change, so receivers can deduplicate. 2xx is success; 410 Gone
// disables the endpoint (the status says so); 429, 502 and 504 throttle
// the destination, honouring Retry-After; other statuses follow the
// delivery package's retry classes; redirects are never followed.
//
// README.md documents the message types and their JSON shapes;
// examples/crm-receiver verifies them in Go and in Node.
package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
)

// Defaults.
const (
	// DefaultPerSecond is the default request rate.
	DefaultPerSecond = 50
	// DefaultConcurrency is how many contacts are sent in parallel.
	DefaultConcurrency = 4
)

// userAgent identifies Vigie's requests.
const userAgent = "Vigie-Webhooks/1"

// Config is a webhook destination's configuration.
type Config struct {
	// URL receives the POSTs: https, or http with allow_private.
	// Required.
	URL string `json:"url"`
	// Secrets sign every message: the current secret first, then older
	// ones kept during a rotation. Each is "whsec_" followed by the
	// base64 of 24 to 64 random bytes. Required.
	Secrets []delivery.SecretSource `json:"secrets"`
	// Concurrency is how many contacts are sent at once (one contact's
	// changes always go in order). Default 4.
	Concurrency int `json:"concurrency,omitempty"`
	delivery.Settings
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time `json:"-"`
}

// Connector delivers changes to one webhook endpoint. It implements
// delivery.Connector.
type Connector struct {
	req         *delivery.Requester
	signer      *Signer
	policy      delivery.Policy
	settings    delivery.Settings
	concurrency int
	now         func() time.Time
	counters    delivery.Counters

	mu       sync.Mutex
	disabled string
}

// New validates cfg, reads its secrets and returns the connector.
func New(cfg Config) (*Connector, error) {
	u, err := delivery.ParseURL(cfg.URL, cfg.AllowPrivate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var raw []string
	var secrets []delivery.Secret
	for _, src := range cfg.Secrets {
		s, err := src.Load()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		secrets = append(secrets, s)
		raw = append(raw, s.Reveal())
	}
	signer, err := NewSigner(raw...)
	if err != nil {
		return nil, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	header := http.Header{}
	header.Set("User-Agent", userAgent)
	return &Connector{
		req: &delivery.Requester{
			Client:   delivery.NewHTTPClient(cfg.HTTPConfig()),
			Base:     u,
			Header:   header,
			Limiter:  delivery.NewLimiter(cfg.RateLimit.WithDefault(DefaultPerSecond)),
			Redactor: delivery.NewRedactor(secrets...),
		},
		signer:      signer,
		policy:      cfg.Retry,
		settings:    cfg.Settings,
		concurrency: cfg.Concurrency,
		now:         cfg.Now,
	}, nil
}

// Deliver implements delivery.Connector: one signed POST per change,
// contacts in parallel, each contact's changes in order.
func (w *Connector) Deliver(ctx context.Context, changes []delivery.Change) ([]delivery.Result, error) {
	results := make([]delivery.Result, len(changes))
	delivery.ForEachOrdered(ctx, len(changes), w.concurrency,
		func(i int) string { return changes[i].Site + "\x00" + changes[i].Subject },
		func(ctx context.Context, i int) { results[i] = w.deliver(ctx, changes[i]) })
	err := delivery.CtxResults(ctx, changes, results)
	w.counters.Record(results)
	return results, err
}

// throttles are the statuses after which the endpoint is throttled.
var throttles = map[int]bool{http.StatusTooManyRequests: true, http.StatusBadGateway: true, http.StatusGatewayTimeout: true}

// deliver sends one change, retrying within the policy.
func (w *Connector) deliver(ctx context.Context, c delivery.Change) delivery.Result {
	if err := c.Validate(); err != nil {
		return delivery.FailedResult(c, err)
	}
	body, err := NewMessage(c, w.now()).Encode()
	if err != nil {
		return delivery.FailedResult(c, fmt.Errorf("%w: %w", delivery.ErrInvalidChange, err))
	}
	id := MessageID(c)
	for n := 1; ; n++ {
		if reason := w.disabledReason(); reason != "" {
			return delivery.Result{ID: c.ID(), Outcome: delivery.Failed, Status: http.StatusGone, Reason: reason}
		}
		ts := w.now()
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(HeaderSignature, w.signer.Sign(id, ts, body))
		resp, err := w.req.Do(ctx, delivery.Request{Op: "webhook POST", Method: http.MethodPost, Body: body, Header: h})
		if err == nil {
			switch {
			case resp.OK():
				return delivery.DoneResult(c)
			case resp.Status == http.StatusGone:
				reason := w.disable()
				return delivery.Result{ID: c.ID(), Outcome: delivery.Failed, Status: http.StatusGone, Reason: reason}
			}
			he := w.req.Error("webhook POST", resp)
			if throttles[resp.Status] {
				if he.RetryAfter == 0 {
					he.RetryAfter = w.policy.Backoff(n)
				}
				w.req.Limiter.Hold(he.RetryAfter, fmt.Sprintf("receiver answered %d", resp.Status))
			}
			err = he
		}
		if !w.policy.Wait(ctx, n, err) {
			r := delivery.FailedResult(c, err)
			w.settings.Log().Warn("webhook delivery failed", "change", r.ID, "status", r.Status,
				"retryable", r.Retryable, "reason", r.Reason)
			return r
		}
	}
}

// disable marks the endpoint disabled after a 410 and returns the reason.
func (w *Connector) disable() string {
	const reason = "endpoint disabled: the receiver answered 410 Gone; fix the destination and restart the plugin"
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.disabled == "" {
		w.disabled = reason
		w.settings.Log().Warn("webhook endpoint disabled after 410 Gone")
	}
	return w.disabled
}

// disabledReason is why the endpoint is disabled, "" if it is not.
func (w *Connector) disabledReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.disabled
}

// Status implements delivery.Connector.
func (w *Connector) Status() delivery.Status {
	s := delivery.Status{Connector: "webhook", State: delivery.StateOK}
	if reason := w.disabledReason(); reason != "" {
		s.State, s.Reason = delivery.StateDisabled, reason
	}
	w.req.Limiter.Apply(&s)
	w.counters.Fill(&s)
	return s
}

// Close implements delivery.Connector.
func (w *Connector) Close() error {
	w.req.Close()
	return nil
}
