package proxy

import "errors"

// ErrAlreadyRunning is returned by Start when another Vigie process holds
// the data directory's lock; the error names its pid when known.
var ErrAlreadyRunning = errors.New("Vigie is already running with this data directory")

// ErrNoDataDir is returned by AddSiteOffline for a data directory Vigie
// never started in.
var ErrNoDataDir = errors.New("no Vigie data directory")

// ErrUnknownSite is returned for a site id the configuration does not
// have.
var ErrUnknownSite = errors.New("unknown site")

// ErrKeyringDiverged is returned, in cluster mode, by Start and by the key
// commands when this node's keyring holds other keys than the cluster's
// (KV VIGIE_KEYRING): the node would pseudonymize differently.
var ErrKeyringDiverged = errors.New("this node's keyring differs from the cluster's shared keyring")

// ErrSharedKeyringUnavailable is returned, in cluster mode, by
// ChangeSharedTokens and SharedTokens when the cluster's shared keyring
// (KV VIGIE_KEYRING) cannot be read or written: no token was changed.
var ErrSharedKeyringUnavailable = errors.New("the cluster's shared keyring (KV VIGIE_KEYRING) cannot be reached")
