package loadtest

import "errors"

// Sentinel errors of the load command.
var (
	// ErrUsage is wrapped by errors about the command line.
	ErrUsage = errors.New("bench: usage")
	// ErrRequestsFailed is returned (after the report is printed) when some
	// requests got a transport error or a non-2xx answer.
	ErrRequestsFailed = errors.New("bench: requests failed")
	// ErrDrainTimeout is returned when the outbox did not empty in time
	// after a load phase.
	ErrDrainTimeout = errors.New("bench: outbox did not drain")
)
