package gpp

import "errors"

// ErrInvalid reports a GPP string that cannot be parsed: bad base64url, a
// bad header, a section count that does not match the header, or a section
// Vigie reads (TCF EU v2, US National and the US state sections) that is
// malformed. Errors from a TCF section also wrap tcf.ErrInvalid. Messages
// never quote the input.
var ErrInvalid = errors.New("gpp: invalid GPP string")
