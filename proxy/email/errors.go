package email

import "errors"

// ErrBadToken is returned by Signer.Verify for a token that is malformed,
// signed with an unknown key, or whose signature does not match.
var ErrBadToken = errors.New("email: invalid token")

// ErrExpired is returned by Signer.Verify for a token whose signature is
// valid but whose expiry has passed; the decoded token is returned with it.
var ErrExpired = errors.New("email: token expired")

// ErrUnsafeLink is returned by Signer.Sign for a link that is not an
// absolute http(s) URL free of whitespace, control characters and
// backslashes.
var ErrUnsafeLink = errors.New("email: link is not a safe http(s) URL")

// ErrConfig is returned by constructors and Rewrite for invalid settings.
var ErrConfig = errors.New("email: invalid configuration")

// ErrTooLarge is returned by RewriteCommand for input above MaxHTMLSize.
var ErrTooLarge = errors.New("email: input too large")
