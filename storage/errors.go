package storage

import "errors"

// Sentinel errors returned (usually wrapped with %w) by this package.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("storage: store closed")
	// ErrInvalidConfig is returned by Open for a missing Dir or a VaultKey
	// that is not 32 bytes.
	ErrInvalidConfig = errors.New("storage: invalid config")
	// ErrInvalidKey is returned when a site, subject, id or cursor cannot be
	// used in a key (empty where required, too long, or containing \x00).
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInvalidRecord is returned by Append for a record that is malformed
	// apart from its keys: zero time, no topic, traits without a subject, or
	// too large.
	ErrInvalidRecord = errors.New("storage: invalid record")
	// ErrOutboxFull is returned by Append when the outbox already holds
	// Config.MaxOutbox entries (the bus is down or too slow).
	ErrOutboxFull = errors.New("storage: outbox full")
	// ErrDiskFull is returned by the writes that grow the disk (Append,
	// PutConsent, KVPut, ObserveEvents, ApplySegments) while the free space
	// is below Config.MinFreeBytes, and by Open when it already is. Nothing
	// was written; retry once space is freed. Deletions are still accepted.
	ErrDiskFull = errors.New("storage: disk full")
	// ErrNotFound is returned by VaultTraits (and ResolveTraits) when there are no traits for the
	// subject and site, or the subject's data key was shredded.
	ErrNotFound = errors.New("storage: not found")
	// ErrCorrupt is returned when stored bytes fail to decode or decrypt
	// (for example the vault key changed).
	ErrCorrupt = errors.New("storage: corrupt or undecryptable data")
	// ErrExists is returned by AddSite for a site id already stored.
	ErrExists = errors.New("storage: already exists")
)
