package hubspot

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the HubSpot destination's configuration is invalid.
	ErrConfig = errors.New("hubspot: invalid configuration")
)
