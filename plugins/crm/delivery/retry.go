package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RetryableStatus reports whether an HTTP status is worth retrying, with
// the classes of Segment's action-destinations (packages/core/src/errors.ts):
// 4xx are final except 408, 423 and 429; 5xx are retried except 501.
// Anything else that is not 2xx (1xx, an unfollowed 3xx) is final.
func RetryableStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusLocked, status == http.StatusTooManyRequests:
		return true
	case status == http.StatusNotImplemented:
		return false
	case status >= 500 && status <= 599:
		return true
	}
	return false
}

// MaxRetryAfter caps what a Retry-After header can ask for.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header, in seconds or as an HTTP
// date, relative to now. It returns 0 when the header is absent, invalid
// or in the past, and at most MaxRetryAfter.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// HTTPError is a non-2xx answer, with what a dead letter needs: the
// status and a short, redacted excerpt of the body.
type HTTPError struct {
	// Op is what was attempted ("hubspot batch upsert").
	Op string
	// Status is the HTTP status.
	Status int
	// Excerpt is the start of the response body (at most MaxExcerpt
	// bytes), with secrets and e-mail addresses redacted.
	Excerpt string
	// Retryable is RetryableStatus(Status) unless the connector knows
	// better.
	Retryable bool
	// RetryAfter is the wait the destination asked for, 0 if none.
	RetryAfter time.Duration
}

// Error implements error.
func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Status >= 300 && e.Status < 400 {
		msg += " (redirect not followed: configure the final URL)"
	}
	if e.Excerpt != "" {
		msg += ": " + e.Excerpt
	}
	return msg
}

// NetError is a request that got no HTTP answer. Its message names the
// kind of failure only, never an address or a URL.
type NetError struct {
	// Op is what was attempted.
	Op string
	// Kind is "timeout", "connection refused", "DNS lookup failed", …
	Kind string
	// Final: retrying cannot help (a refused address, a bad certificate).
	Final bool
	err   error
}

// Error implements error.
func (e *NetError) Error() string { return e.Op + ": " + e.Kind }

// Unwrap returns the underlying error (ErrNetwork, or ErrForbiddenAddress
// for a refused address).
func (e *NetError) Unwrap() []error { return []error{ErrNetwork, e.err} }

// newNetError classifies a transport error of op.
func newNetError(op string, err error) *NetError {
	ne := &NetError{Op: op, Kind: "network error", err: err}
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		timeout interface{ Timeout() bool }
	)
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		ne.Kind, ne.Final = forbiddenKind(err), true
	case errors.Is(err, context.Canceled):
		ne.Kind = "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeout) && timeout.Timeout():
		ne.Kind = "timeout"
	case errors.As(err, &dnsErr):
		ne.Kind = "DNS lookup failed"
		if dnsErr.IsNotFound {
			ne.Kind = "host not found"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		ne.Kind = "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		ne.Kind = "connection reset"
	case errors.As(err, &certErr), errors.As(err, &uaErr), errors.As(err, &hostErr), errors.As(err, &invErr):
		ne.Kind, ne.Final = "TLS certificate not accepted", true
	}
	return ne
}

// PausedError is returned instead of sending while a destination is
// paused.
type PausedError struct {
	// Until is when the pause ends.
	Until time.Time
	// Reason is why it is paused.
	Reason string
}

// Error implements error.
func (e *PausedError) Error() string {
	return fmt.Sprintf("paused until %s: %s", e.Until.UTC().Format(time.RFC3339), e.Reason)
}

// Is makes errors.Is(err, ErrPaused) true.
func (e *PausedError) Is(target error) bool { return target == ErrPaused }

// Classification is what Classify makes of an error.
type Classification struct {
	// Retryable: a later attempt may succeed.
	Retryable bool
	// RetryAfter is the wait the destination asked for, 0 if none.
	RetryAfter time.Duration
	// Status is the HTTP status, 0 without an answer.
	Status int
	// Reason is the error's message (redacted, fit for a dead letter).
	Reason string
}

// Classify decides whether err is worth retrying: HTTP errors by their
// status (RetryableStatus), network errors and timeouts yes except a
// refused address or certificate, a pause yes (after it ends), an invalid
// change no, anything else yes.
func Classify(err error) Classification {
	if err == nil {
		return Classification{}
	}
	var (
		he *HTTPError
		ne *NetError
		pe *PausedError
	)
	c := Classification{Retryable: true, Reason: err.Error()}
	switch {
	case errors.As(err, &he):
		c.Retryable, c.RetryAfter, c.Status = he.Retryable, he.RetryAfter, he.Status
	case errors.As(err, &pe):
		c.RetryAfter = max(time.Until(pe.Until), 0)
	case errors.As(err, &ne):
		c.Retryable = !ne.Final
	case errors.Is(err, ErrForbiddenAddress), errors.Is(err, ErrInvalidChange), errors.Is(err, ErrConfig):
		c.Retryable = false
	}
	return c
}

// Policy is how often and how long a connector retries inside one
// Deliver call. A wait longer than MaxInlineWait, or past the context's
// deadline, is not slept: the change comes back failed and retryable with
// RetryAfter, for the caller's redelivery (JetStream's backoff and dead
// letters) to take over.
type Policy struct {
	// MaxAttempts is how many times one Deliver sends a request before
	// giving up on it. Default 3.
	MaxAttempts int
	// MinBackoff is the base delay before the first retry; it doubles
	// with each retry. Default 500ms.
	MinBackoff time.Duration
	// MaxBackoff caps the base delay. Default 30s.
	MaxBackoff time.Duration
	// MaxInlineWait is the longest wait slept inside Deliver. Default 5s,
	// well under the plugin runtime's call_timeout.
	MaxInlineWait time.Duration
}

// Policy defaults.
const (
	DefaultMaxAttempts   = 3
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxInlineWait = 5 * time.Second
)

// withDefaults fills zero fields.
func (p Policy) withDefaults() Policy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = DefaultMinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = p.MinBackoff
	}
	if p.MaxInlineWait <= 0 {
		p.MaxInlineWait = DefaultMaxInlineWait
	}
	return p
}

// Backoff is the delay before retry number n (1 for the first retry):
// exponential (MinBackoff·2^(n-1), capped at MaxBackoff) with "equal
// jitter", a random value in [base/2, base].
func (p Policy) Backoff(n int) time.Duration {
	p = p.withDefaults()
	base := p.MinBackoff
	for i := 1; i < n && base < p.MaxBackoff; i++ {
		base *= 2
	}
	base = min(base, p.MaxBackoff)
	half := base / 2
	return half + rand.N(half+1)
}

// Delay is the wait before retrying after attempt number n failed with
// err, and whether to retry inside this Deliver at all: not when err is
// final, when n attempts are used up, or when the wait (Retry-After or
// backoff) exceeds MaxInlineWait or the context's deadline.
func (p Policy) Delay(ctx context.Context, n int, err error) (time.Duration, bool) {
	p = p.withDefaults()
	c := Classify(err)
	if !c.Retryable || n >= p.MaxAttempts || ctx.Err() != nil {
		return 0, false
	}
	d := c.RetryAfter
	if d == 0 {
		d = p.Backoff(n)
	}
	if d > p.MaxInlineWait {
		return 0, false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d+time.Second {
		return 0, false
	}
	return d, true
}

// Wait sleeps for the retry delay after attempt n failed with err and
// reports whether to try again (see Delay).
func (p Policy) Wait(ctx context.Context, n int, err error) bool {
	d, ok := p.Delay(ctx, n, err)
	if !ok {
		return false
	}
	return Sleep(ctx, d) == nil
}

// Sleep waits for d or until ctx ends, and returns ctx's error if it
// ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
