package console

import "errors"

// Sentinel errors.
var (
	// ErrWrongToken: Server.SignIn was given a token the keyring does not
	// hold.
	ErrWrongToken = errors.New("console: wrong token")
	// ErrThrottled: too many failed sign-ins from the client's network.
	ErrThrottled = errors.New("console: too many failed attempts")
	// ErrInvalidSite wraps a site that cannot be added; its text names
	// the problem in the user's terms.
	ErrInvalidSite = errors.New("console: invalid site")
	// ErrInvalidRequest wraps a privacy request that cannot be made; its
	// text names the problem in the user's terms.
	ErrInvalidRequest = errors.New("console: invalid privacy request")
	// ErrNotFound: a source has nothing under the name or id asked for.
	ErrNotFound = errors.New("console: not found")
	// ErrNoServer: Config.Server is missing.
	ErrNoServer = errors.New("console: no server")
)
