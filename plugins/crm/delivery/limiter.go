package delivery

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is the configured request rate of one destination.
type RateLimit struct {
	// PerSecond is the sustained request rate. Default: the connector's
	// (HubSpot 9, Brevo 9, webhook 50).
	PerSecond float64 `json:"per_second,omitempty"`
	// Burst is how many requests may go at once. Default: PerSecond
	// rounded up, at least 1.
	Burst int `json:"burst,omitempty"`
}

// WithDefault fills a zero PerSecond with perSecond and a zero Burst.
func (r RateLimit) WithDefault(perSecond float64) RateLimit {
	if r.PerSecond <= 0 {
		r.PerSecond = perSecond
	}
	if r.Burst <= 0 {
		r.Burst = max(1, int(r.PerSecond+0.999))
	}
	return r
}

// Observation is what a response's rate-limit headers said. Unknown
// numbers are negative, unknown durations zero.
type Observation struct {
	// Limit is the number of requests allowed per Window.
	Limit int
	// Remaining is how many are left in the current window.
	Remaining int
	// Window is the window's length (HubSpot's interval).
	Window time.Duration
	// Reset is the time until the window resets (Brevo's reset).
	Reset time.Duration
}

// LimiterState is a Limiter's state, for the destination's status.
type LimiterState struct {
	// PerSecond and Burst are the token bucket's current settings.
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
	// Limit and Remaining are the destination's last reported window
	// limit and remaining requests, -1 when unknown.
	Limit     int `json:"limit"`
	Remaining int `json:"remaining"`
	// ResetAt is when the destination said its window resets.
	ResetAt time.Time `json:"reset_at,omitzero"`
	// ThrottledUntil is the end of a short hold (a 429, an exhausted
	// window), with ThrottleReason.
	ThrottledUntil time.Time `json:"throttled_until,omitzero"`
	ThrottleReason string    `json:"throttle_reason,omitempty"`
	// PausedUntil is the end of a long pause (HubSpot's daily limit),
	// with PauseReason.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PauseReason string    `json:"pause_reason,omitempty"`
}

// Limiter is one destination's request limiter: a token bucket
// (golang.org/x/time/rate) at the configured rate, lowered to what the
// destination's rate-limit headers allow, plus a short hold (throttle)
// and a long pause ("paused until", visible in the status).
type Limiter struct {
	mu         sync.Mutex
	bucket     *rate.Limiter
	configured RateLimit
	state      LimiterState
	// maxHold is the longest hold Wait sleeps through.
	maxHold time.Duration
}

// NewLimiter returns a limiter at rl (see RateLimit.WithDefault).
func NewLimiter(rl RateLimit) *Limiter {
	rl = rl.WithDefault(1)
	return &Limiter{
		bucket:     rate.NewLimiter(rate.Limit(rl.PerSecond), rl.Burst),
		configured: rl,
		state:      LimiterState{PerSecond: rl.PerSecond, Burst: rl.Burst, Limit: -1, Remaining: -1},
		maxHold:    DefaultMaxInlineWait,
	}
}

// Wait blocks until a request may be sent. While paused, or throttled for
// longer than the inline wait, it returns a *PausedError at once (errors.Is
// ErrPaused) saying until when.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := time.Now()
		st := l.state
		l.mu.Unlock()
		if now.Before(st.PausedUntil) {
			return &PausedError{Until: st.PausedUntil, Reason: st.PauseReason}
		}
		if !now.Before(st.ThrottledUntil) {
			break
		}
		d := st.ThrottledUntil.Sub(now)
		if dl, ok := ctx.Deadline(); d > l.maxHold || (ok && time.Until(dl) < d) {
			return &PausedError{Until: st.ThrottledUntil, Reason: st.ThrottleReason}
		}
		if err := Sleep(ctx, d); err != nil {
			return err
		}
	}
	if err := l.bucket.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The bucket cannot grant a token before the deadline.
		return &PausedError{Until: time.Now().Add(time.Second), Reason: "rate limit"}
	}
	return nil
}

// Hold throttles requests for d (after a 429 or an exhausted window).
func (l *Limiter) Hold(d time.Duration, reason string) {
	if d <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := time.Now().Add(d); until.After(l.state.ThrottledUntil) {
		l.state.ThrottledUntil, l.state.ThrottleReason = until, reason
	}
}

// PauseUntil stops all requests until t, for reason (shown in the status).
func (l *Limiter) PauseUntil(t time.Time, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.state.PausedUntil) {
		l.state.PausedUntil, l.state.PauseReason = t, reason
	}
}

// Observe adapts the limiter to a response's rate-limit headers: the
// bucket's rate drops to Limit/Window (or, without a window length,
// Remaining/Reset) when that is below the configured rate (and returns to
// it when the destination allows more), and an
// exhausted window holds requests until it resets (Reset, or a tenth of
// Window when the destination gives no reset, as HubSpot's rolling
// window).
func (l *Limiter) Observe(o Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if o.Limit >= 0 {
		l.state.Limit = o.Limit
	}
	if o.Remaining >= 0 {
		l.state.Remaining = o.Remaining
	}
	if o.Reset > 0 {
		l.state.ResetAt = now.Add(o.Reset)
	}
	allowed := -1.0
	switch {
	case o.Limit > 0 && o.Window > 0:
		allowed = float64(o.Limit) / o.Window.Seconds()
	case o.Remaining > 0 && o.Reset > 0:
		// No window length (Brevo): spread what is left over what is
		// left of the window.
		allowed = float64(o.Remaining) / o.Reset.Seconds()
	}
	if allowed > 0 {
		perSecond := min(l.configured.PerSecond, allowed)
		if perSecond != l.state.PerSecond {
			l.state.PerSecond = perSecond
			l.bucket.SetLimit(rate.Limit(perSecond))
		}
	}
	if o.Remaining == 0 {
		hold := o.Reset
		if hold <= 0 {
			hold = o.Window / 10
		}
		if hold > 0 {
			if until := now.Add(hold); until.After(l.state.ThrottledUntil) {
				l.state.ThrottledUntil = until
				l.state.ThrottleReason = "rate limit window exhausted"
			}
		}
	}
}

// State returns the limiter's state.
func (l *Limiter) State() LimiterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Apply sets s.State and its reason from the limiter (paused, then
// throttled) when s is not already disabled, and copies the state into
// s.RateLimit.
func (l *Limiter) Apply(s *Status) {
	st := l.State()
	s.RateLimit = st
	if s.State == StateDisabled {
		return
	}
	now := time.Now()
	switch {
	case now.Before(st.PausedUntil):
		s.State, s.PausedUntil, s.Reason = StatePaused, st.PausedUntil, st.PauseReason
	case now.Before(st.ThrottledUntil):
		s.State, s.Reason = StateThrottled, st.ThrottleReason
	default:
		s.State = StateOK
	}
}
