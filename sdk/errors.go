package sdk

import "errors"

// Sentinel errors. Errors crossing the gRPC boundary keep their identity:
// test them with errors.Is on either side.
var (
	// ErrProtocolVersion means the plugin was built for another plugin
	// protocol version than this host speaks; rebuild it against a
	// matching version of this SDK.
	ErrProtocolVersion = errors.New("sdk: plugin protocol version mismatch")
	// ErrCapability means a host service was called without the
	// capability declared in the plugin's manifest.
	ErrCapability = errors.New("sdk: capability not declared in the plugin manifest")
	// ErrNotFound means a key, profile or contact does not exist.
	ErrNotFound = errors.New("sdk: not found")
	// ErrNoHost means a host service was called outside of a hook, or the
	// host provides no services.
	ErrNoHost = errors.New("sdk: no host services available")
	// ErrNotImplemented means the plugin does not serve the called hook.
	ErrNotImplemented = errors.New("sdk: hook not implemented by the plugin")
	// ErrInvalidPlugin means a Plugin or its Manifest is incomplete or
	// malformed.
	ErrInvalidPlugin = errors.New("sdk: invalid plugin")
)
