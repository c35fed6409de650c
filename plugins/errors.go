package plugins

import "errors"

// Sentinel errors of the plugin runtime.
var (
	// ErrInvalidConfig is wrapped by every configuration error.
	ErrInvalidConfig = errors.New("plugins: invalid configuration")
	// ErrUnknownPlugin is returned for a plugin name that is not configured.
	ErrUnknownPlugin = errors.New("plugins: unknown plugin")
	// ErrManifest means a plugin's manifest does not match its
	// configuration (wrong name, unknown purpose, invalid filter).
	ErrManifest = errors.New("plugins: manifest refused")
	// ErrNotRunning is returned when a plugin is not ready to be called
	// (starting, restarting, failed or stopped).
	ErrNotRunning = errors.New("plugins: plugin not running")
	// ErrBusDown is returned by what needs NATS while it is not
	// connected, instead of waiting for it.
	ErrBusDown = errors.New("plugins: nats not connected")
	// ErrCrashed means the plugin process died or stopped answering
	// during a call; it is restarted.
	ErrCrashed = errors.New("plugins: plugin crashed")
)
