package response

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the plugin's configuration section is invalid: not
	// JSON of the documented shape, a bad duration, name or response
	// kind. The message names the field.
	ErrConfig = errors.New("response: invalid configuration")
	// ErrState means the model's stored state could not be read or
	// written through the host's key-value store; the event is retried.
	ErrState = errors.New("response: model state")
	// ErrUnknownSite means a query named a site the plugin has no model
	// for yet.
	ErrUnknownSite = errors.New("response: no model for this site")
)
