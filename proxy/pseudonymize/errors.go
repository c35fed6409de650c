package pseudonymize

import "errors"

// Sentinel errors returned (wrapped with %w) by this package.
var (
	// ErrNoKeys is returned by New when Config.Keys is empty.
	ErrNoKeys = errors.New("pseudonymize: at least one key is required")
	// ErrShortSecret is returned by New when a key's secret is shorter than MinSecretLen.
	ErrShortSecret = errors.New("pseudonymize: key secret too short")
	// ErrKeyID is returned by New when a key id is empty or repeated.
	ErrKeyID = errors.New("pseudonymize: key id empty or duplicated")
	// ErrInvalidJSON is returned by ScrubProperties and SplitTraits when the
	// input is not a single valid JSON object.
	ErrInvalidJSON = errors.New("pseudonymize: invalid JSON object")
	// ErrRotation is returned by ParseRotation for an unknown rotation.
	ErrRotation = errors.New("pseudonymize: unknown pseudonym rotation")
)
