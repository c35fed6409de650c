package rollup

import "errors"

// Sentinel errors returned (usually wrapped with %w) by this package.
var (
	// ErrInvalidConfig is returned by New, NewConsumer and
	// NewDecisionCounter for a missing or out-of-range setting.
	ErrInvalidConfig = errors.New("rollup: invalid config")
	// ErrInvalidQuery is returned by Overview for an empty or invalid site,
	// an empty or inverted period, a period longer than MaxRange, or a
	// comparison period given by one bound only.
	ErrInvalidQuery = errors.New("rollup: invalid query")
	// ErrCorrupt is returned when a stored rollup does not decode.
	ErrCorrupt = errors.New("rollup: corrupt rollup")
)
