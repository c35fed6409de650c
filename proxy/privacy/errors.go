package privacy

import "errors"

// Sentinel errors of the package.
var (
	// ErrInvalidConfig is returned by New for a Config missing a required
	// field.
	ErrInvalidConfig = errors.New("privacy: invalid config")
	// ErrNotFound is returned for an unknown request id.
	ErrNotFound = errors.New("privacy: no such request")
	// ErrStopped is returned once the Service is stopped.
	ErrStopped = errors.New("privacy: service stopped")
	// ErrExportPending is returned for the export of a done request
	// whose receiving node's part has not reached the cluster's bucket
	// yet (its outbox publishes it): retry shortly.
	ErrExportPending = errors.New("privacy: the export's parts are not all shared yet")
)
