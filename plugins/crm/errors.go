package crm

import "errors"

// ErrConfig is wrapped by every error in a destination's configuration.
var ErrConfig = errors.New("crm: invalid configuration")
