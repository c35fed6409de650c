package delivery

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrInvalidChange means a Change lacks a field its kind needs.
	ErrInvalidChange = errors.New("delivery: invalid change")
	// ErrForbiddenAddress means the destination resolved to an address
	// the SSRF policy refuses (loopback, link-local, private, …).
	ErrForbiddenAddress = errors.New("delivery: destination address not allowed")
	// ErrPaused means the destination is paused (for example HubSpot's
	// daily limit is used up) and nothing was sent.
	ErrPaused = errors.New("delivery: destination paused")
	// ErrSecret means a secret could not be read from its source.
	ErrSecret = errors.New("delivery: secret unavailable")
	// ErrConfig means a delivery setting is invalid.
	ErrConfig = errors.New("delivery: invalid configuration")
	// ErrNetwork means the request did not get an HTTP answer (connection
	// refused or reset, DNS failure, timeout, TLS failure).
	ErrNetwork = errors.New("delivery: network error")
)
