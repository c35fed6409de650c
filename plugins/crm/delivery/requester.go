package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultMaxResponse is the most bytes of a response body read.
const DefaultMaxResponse = 1 << 20

// Requester sends the requests of one destination: it waits for the
// Limiter, sends JSON through the SSRF-safe client, reads a bounded
// answer, lets the connector read its rate-limit headers, and turns
// transport failures into *NetError. It does not retry; connectors do,
// with a Policy.
type Requester struct {
	// Client is the HTTP client, from NewHTTPClient. Required.
	Client *http.Client
	// Base is the destination's base URL (from configuration only);
	// request paths are appended to it. Required.
	Base *url.URL
	// Header is added to every request (authentication).
	Header http.Header
	// Limiter paces requests. Required.
	Limiter *Limiter
	// Redactor cleans error excerpts. Nil: patterns only.
	Redactor *Redactor
	// Observe, when set, is called with every answer's status and
	// headers (to read rate-limit headers).
	Observe func(status int, h http.Header)
	// MaxResponse is the most bytes of a body read. Default 1 MiB.
	MaxResponse int64
}

// Request is one call.
type Request struct {
	// Op names the call in errors ("brevo create contact").
	Op string
	// Method is the HTTP method.
	Method string
	// Path is appended to the base URL; variable parts must already be
	// escaped (url.PathEscape).
	Path string
	// Query is the query string.
	Query url.Values
	// Body is sent as JSON when not nil ([]byte: as is).
	Body any
	// Header holds extra headers for this call.
	Header http.Header
}

// Response is an HTTP answer of any status.
type Response struct {
	// Status is the HTTP status.
	Status int
	// Header is the answer's headers.
	Header http.Header
	// Body is the answer's body, at most MaxResponse bytes.
	Body []byte
}

// OK reports a 2xx status.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status <= 299 }

// Do sends req. It returns a Response for any HTTP answer (2xx or not:
// see Error) and an error only when there was none: the limiter refused
// (paused), ctx ended, or the request failed (*NetError, which matches
// ErrForbiddenAddress for a refused address).
func (r *Requester) Do(ctx context.Context, req Request) (*Response, error) {
	if err := r.Limiter.Wait(ctx); err != nil {
		return nil, err
	}
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", req.Op, err)
		}
		body = bytes.NewReader(buf)
	}
	target := strings.TrimRight(r.Base.String(), "/") + req.Path
	if len(req.Query) > 0 {
		target += "?" + req.Query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, target, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: invalid request URL", ErrConfig, req.Op)
	}
	for k, vs := range r.Header {
		hr.Header[k] = vs
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	hr.Header.Set("Accept", "application/json")
	if body != nil && hr.Header.Get("Content-Type") == "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.Client.Do(hr)
	if err != nil {
		return nil, newNetError(req.Op, err)
	}
	defer resp.Body.Close()
	limit := r.MaxResponse
	if limit <= 0 {
		limit = DefaultMaxResponse
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, newNetError(req.Op, err)
	}
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if r.Observe != nil {
		r.Observe(out.Status, out.Header)
	}
	if out.Status == http.StatusTooManyRequests {
		if d := ParseRetryAfter(out.Header, time.Now()); d > 0 {
			r.Limiter.Hold(d, "HTTP 429 Retry-After")
		}
	}
	return out, nil
}

// Call sends req, retrying within policy p: a 2xx answer, or one whose
// status is in ok, is returned; another is turned into its error by fail
// (the connector's reading of its vendor's errors, e.g. Error with its
// 429 policies), and retried while p allows it.
func (r *Requester) Call(ctx context.Context, p Policy, req Request, fail func(op string, resp *Response) error, ok ...int) (*Response, error) {
	for n := 1; ; n++ {
		resp, err := r.Do(ctx, req)
		if err == nil {
			if resp.OK() || slices.Contains(ok, resp.Status) {
				return resp, nil
			}
			err = fail(req.Op, resp)
		}
		if !p.Wait(ctx, n, err) {
			return nil, err
		}
	}
}

// Error is the *HTTPError for a non-2xx answer to op: status, redacted
// excerpt, RetryableStatus and Retry-After.
func (r *Requester) Error(op string, resp *Response) *HTTPError {
	return &HTTPError{
		Op:         op,
		Status:     resp.Status,
		Excerpt:    r.Redactor.Excerpt(resp.Body),
		Retryable:  RetryableStatus(resp.Status),
		RetryAfter: ParseRetryAfter(resp.Header, time.Now()),
	}
}

// Close releases the client's idle connections.
func (r *Requester) Close() {
	r.Client.CloseIdleConnections()
}
