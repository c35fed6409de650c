package webhook

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the webhook destination's configuration is invalid.
	ErrConfig = errors.New("webhook: invalid configuration")
)
