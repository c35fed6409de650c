package geodb

import "errors"

// ErrDatabase means a database file cannot be read or is not a supported
// MaxMind-format database; wrapped with %w by the functions that return it.
var ErrDatabase = errors.New("geoip: unusable database")
