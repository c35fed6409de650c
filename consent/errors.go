package consent

import "errors"

// Sentinel errors. Functions wrap them with %w and add context that never
// contains personal data; test with errors.Is.
var (
	// ErrInvalidConsent reports a consent signal that could not be read
	// (malformed JSON, a non-boolean flag, a bad pixel token). Callers treat
	// the event as carrying no consent signal.
	ErrInvalidConsent = errors.New("consent: invalid consent signal")

	// ErrInvalidPolicy reports a Policy or Outcome that is not usable.
	ErrInvalidPolicy = errors.New("consent: invalid policy")

	// ErrUnknownPurpose reports a purpose name that is not registered.
	ErrUnknownPurpose = errors.New("consent: unknown purpose")

	// ErrInvalidPurpose reports a purpose that cannot be registered: a bad
	// name or a full registry.
	ErrInvalidPurpose = errors.New("consent: invalid purpose")
)
