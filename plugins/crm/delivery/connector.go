package delivery

import (
	"context"
	"sync"
	"time"
)

// Connector delivers changes to one destination (a CRM account or a
// webhook endpoint). Implementations are safe for concurrent use, but the
// caller keeps the changes of one subject in order by not delivering two
// batches with the same subject at once.
type Connector interface {
	// Deliver sends changes, in order per contact, and returns one
	// Result per change, in the same order. The error is non-nil only
	// when ctx ended first; the results are complete even then (what was
	// not finished is failed and retryable).
	Deliver(ctx context.Context, changes []Change) ([]Result, error)
	// Status is the destination's health: paused, disabled, rate limit,
	// last error.
	Status() Status
	// Close releases idle connections. Deliver must not be called after.
	Close() error
}

// Outcome is what became of one change.
type Outcome string

// Outcomes.
const (
	// Done: the destination has the change (or already had it: a delete
	// of a contact that does not exist is done).
	Done Outcome = "done"
	// Failed: not delivered; see Result.Retryable.
	Failed Outcome = "failed"
	// NotSupported: this connector cannot do this kind of change.
	NotSupported Outcome = "not_supported"
)

// Result is the outcome of one change.
type Result struct {
	// ID is the change's ID.
	ID string
	// Outcome is done, failed or not_supported.
	Outcome Outcome
	// Retryable (failed only): trying again later may succeed.
	Retryable bool
	// RetryAfter (failed and retryable only): the earliest useful retry,
	// from the destination's Retry-After, rate-limit reset or pause; 0:
	// the caller's own backoff.
	RetryAfter time.Duration
	// Status is the last HTTP status, 0 when there was no answer.
	Status int
	// Reason says why a change failed or is not supported, in words
	// fit for a dead letter and a privacy request: no secret, no e-mail
	// address.
	Reason string
}

// DoneResult is a successful Result for c.
func DoneResult(c Change) Result { return Result{ID: c.ID(), Outcome: Done} }

// NotSupportedResult is a Result saying the connector cannot do c.
func NotSupportedResult(c Change, reason string) Result {
	return Result{ID: c.ID(), Outcome: NotSupported, Reason: reason}
}

// FailedResult is the failed Result for c after err, classified with
// Classify. Its Reason has c's own values (the e-mail in any letter case
// or encoding, the mapped properties' text) removed as well as what
// Redact removes: a CRM's error body may echo what it was sent.
func FailedResult(c Change, err error) Result {
	cl := Classify(err)
	r := Result{ID: c.ID(), Outcome: Failed, Retryable: cl.Retryable, Status: cl.Status, Reason: redactChange(cl.Reason, c)}
	if cl.Retryable {
		r.RetryAfter = cl.RetryAfter
	}
	return r
}

// State summarises a destination's health.
type State string

// States.
const (
	// StateOK: delivering.
	StateOK State = "ok"
	// StateThrottled: waiting for the rate limit (a 429 or an exhausted
	// window); it resumes by itself shortly.
	StateThrottled State = "throttled"
	// StatePaused: nothing is sent until PausedUntil (for example
	// HubSpot's daily limit).
	StatePaused State = "paused"
	// StateDisabled: the endpoint asked not to be called again (a
	// webhook's 410 Gone); a restart with a fixed configuration enables
	// it again.
	StateDisabled State = "disabled"
)

// Status is a destination's health, for the admin API.
type Status struct {
	// Connector is the connector's kind: webhook, hubspot, brevo, noop.
	Connector string `json:"connector"`
	// State is ok, throttled, paused or disabled.
	State State `json:"state"`
	// PausedUntil is when a paused destination resumes.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	// Reason explains a paused, throttled or disabled state.
	Reason string `json:"reason,omitempty"`
	// RateLimit is the limiter's current state.
	RateLimit LimiterState `json:"rate_limit"`
	// Delivered and Failed count changes since start (Failed counts
	// final and retryable failures).
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	// LastError is the last failure's reason, LastErrorAt its time.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Counters keeps the counts and last error of a Status; connectors embed
// it. Its zero value is ready.
type Counters struct {
	mu          sync.Mutex
	delivered   uint64
	failed      uint64
	lastError   string
	lastErrorAt time.Time
}

// Record counts results.
func (c *Counters) Record(results []Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range results {
		switch r.Outcome {
		case Done:
			c.delivered++
		case Failed:
			c.failed++
			c.lastError, c.lastErrorAt = r.Reason, time.Now()
		}
	}
}

// Fill copies the counts and last error into s.
func (c *Counters) Fill(s *Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Delivered, s.Failed = c.delivered, c.failed
	s.LastError, s.LastErrorAt = c.lastError, c.lastErrorAt
}

// Noop is a Connector that delivers nothing and reports every valid
// change done: the baseline of the benchmarks.
type Noop struct {
	counters Counters
}

// Deliver implements Connector.
func (n *Noop) Deliver(ctx context.Context, changes []Change) ([]Result, error) {
	out := make([]Result, len(changes))
	for i, c := range changes {
		if err := c.Validate(); err != nil {
			out[i] = FailedResult(c, err)
			continue
		}
		out[i] = DoneResult(c)
	}
	n.counters.Record(out)
	return out, ctx.Err()
}

// Status implements Connector.
func (n *Noop) Status() Status {
	s := Status{Connector: "noop", State: StateOK, RateLimit: LimiterState{Remaining: -1}}
	n.counters.Fill(&s)
	return s
}

// Close implements Connector.
func (n *Noop) Close() error { return nil }

// CtxResults completes results after ctx ended: every change without an
// outcome yet is failed and retryable. It returns ctx's error.
func CtxResults(ctx context.Context, changes []Change, results []Result) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	for i := range results {
		if results[i].Outcome == "" {
			results[i] = Result{ID: changes[i].ID(), Outcome: Failed, Retryable: true, Reason: "interrupted before delivery"}
		}
	}
	return err
}
