package main

import "errors"

// ErrConfig means the plugin's configuration section is invalid; Configure
// wraps it with the reason, and Vigie refuses to load the plugin.
var ErrConfig = errors.New("campaign-normalizer: invalid configuration")
