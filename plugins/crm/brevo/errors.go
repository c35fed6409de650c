package brevo

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the Brevo destination's configuration is invalid.
	ErrConfig = errors.New("brevo: invalid configuration")
)
