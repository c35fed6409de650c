package geoip

import (
	"errors"

	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
)

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means the plugin's configuration section is invalid.
	ErrConfig = errors.New("geoip: invalid configuration")
	// ErrDatabase means a database file cannot be read or is not a
	// supported MaxMind-format database.
	ErrDatabase = geodb.ErrDatabase
)
