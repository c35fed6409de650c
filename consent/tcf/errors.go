package tcf

import "errors"

// ErrInvalid reports a TC string that cannot be decoded: bad base64url,
// an unsupported version, a truncated segment, an out-of-range or
// inconsistent vendor id, or an unknown or repeated segment. Errors from
// Decode wrap it with context that never quotes the input.
var ErrInvalid = errors.New("tcf: invalid TC string")
