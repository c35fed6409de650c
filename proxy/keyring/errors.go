package keyring

import "errors"

// Sentinel errors; every error of the package wraps one of them or an
// os/fs error.
var (
	// ErrNoKeys is returned when a keyring has no usable pseudonymization
	// key, or lacks another part (vault key, admin token).
	ErrNoKeys = errors.New("keyring: no active key")
	// ErrUnknownKey is returned by Retire for a key id the keyring lacks.
	ErrUnknownKey = errors.New("keyring: unknown key")
	// ErrNoMasterKey: no master key is configured or at hand.
	ErrNoMasterKey = errors.New("keyring: no master key")
	// ErrNoKeyring: Options.MustExist is set and there is no keyring.
	ErrNoKeyring = errors.New("keyring: no keyring")
	// ErrKeyringExists: Install was asked to write a keyring where one
	// exists.
	ErrKeyringExists = errors.New("keyring: a keyring exists")
	// ErrWrongMasterKey: the keyring is sealed under another master key
	// than the one at hand.
	ErrWrongMasterKey = errors.New("keyring: sealed under another master key")
	// ErrTampered: the keyring names the master key at hand but does not
	// decrypt: it was damaged or modified.
	ErrTampered = errors.New("keyring: does not decrypt (damaged or modified)")
	// ErrFormat: keyring.json is neither a sealed keyring nor the old
	// plaintext one, or is of a version this Vigie does not know.
	ErrFormat = errors.New("keyring: unknown format")
	// ErrBadMasterKey: a master key's text is not "vigie-mk-" and 32
	// bytes in base64url.
	ErrBadMasterKey = errors.New("keyring: not a Vigie master key")
	// ErrAmbiguousSource: more than one master key source is configured.
	ErrAmbiguousSource = errors.New("keyring: several master key sources")
	// ErrCommand: the master key command failed or timed out.
	ErrCommand = errors.New("keyring: master key command failed")
	// ErrWeakToken: a chosen admin token is too short or has characters
	// an Authorization header cannot carry.
	ErrWeakToken = errors.New("keyring: admin token must be 16 to 256 visible ASCII characters")
	// ErrUnknownRole: a token was asked for with a role that does not
	// exist (Roles lists them).
	ErrUnknownRole = errors.New("keyring: unknown role")
	// ErrBadTokenName: a token's name is too long or not printable.
	ErrBadTokenName = errors.New("keyring: bad token name")
	// ErrUnknownToken: RevokeToken was given an id the keyring lacks.
	ErrUnknownToken = errors.New("keyring: unknown token")
	// ErrLastAdmin: revoking the token would leave no admin token.
	ErrLastAdmin = errors.New("keyring: the last admin token cannot be revoked; `vigie admin token reset` replaces it")
)
