package segments

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the plugin's configuration section is invalid: not
	// JSON of the documented shape, a bad or duplicate name, or an
	// expression that does not compile, type-check or yield a bool. The
	// message names the segment or scoring rule and, for expressions,
	// carries CEL's line:column position.
	ErrConfig = errors.New("segments: invalid configuration")
	// ErrEval means an expression failed while evaluating one event (for
	// example a missing map key, an unknown counter window, or the cost
	// limit). Only that event fails; the host retries or dead-letters it.
	ErrEval = errors.New("segments: evaluation failed")
)
