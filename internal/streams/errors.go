package streams

import "errors"

// Sentinel errors of package streams.
var (
	// ErrRateLimited is returned by Declarer.Ensure while a failed
	// declaration is too recent to try again.
	ErrRateLimited = errors.New("streams: declared too recently; not retried yet")
	// ErrNoJetStream is returned when there is no JetStream handle yet.
	ErrNoJetStream = errors.New("streams: no JetStream connection")
)
