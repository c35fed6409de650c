package email

import "errors"

// ErrBadToken is returned by Signer.Verify and Signer.VerifyRecipient for
// a token or recipient value that is malformed, signed with an unknown key
// (or for another site), or whose signature does not match.
var ErrBadToken = errors.New("email: invalid token")

// ErrExpired is returned by Signer.Verify and Signer.VerifyRecipient for a
// token or recipient value whose signature is valid but whose expiry has
// passed; Verify returns the decoded token with it.
var ErrExpired = errors.New("email: token expired")

// ErrUnsafeLink is returned by Signer.Sign for a link that is not an
// absolute http(s) URL free of whitespace, control characters and
// backslashes.
var ErrUnsafeLink = errors.New("email: link is not a safe http(s) URL")

// ErrConfig is returned by constructors and Rewrite for invalid settings.
var ErrConfig = errors.New("email: invalid configuration")

// ErrTooLarge is returned by RewriteCommand for input above MaxHTMLSize.
var ErrTooLarge = errors.New("email: input too large")

// ErrBadInput is returned by TokensCommand and SignRecipients for recipients
// that cannot be read: not UTF-8, an empty user id, a malformed CSV line.
// The message names the lines concerned.
var ErrBadInput = errors.New("email: invalid input")
