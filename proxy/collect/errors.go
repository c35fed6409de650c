package collect

import "errors"

// Sentinel errors. Errors returned by this package wrap exactly one of them;
// test with errors.Is.
var (
	// ErrMalformedJSON means the body is not syntactically valid JSON.
	ErrMalformedJSON = errors.New("collect: malformed JSON")
	// ErrInvalidEvent means the JSON is well formed but an event breaks the
	// Segment schema (wrong type, missing required field). The concrete
	// error is a *FieldError.
	ErrInvalidEvent = errors.New("collect: invalid event")
	// ErrTooLarge means an event exceeds its size limit (MaxEventBytes by
	// default) or a body exceeds the limit given to ReadBody.
	ErrTooLarge = errors.New("collect: payload too large")
	// ErrTooManyEvents means a batch holds more events than allowed.
	ErrTooManyEvents = errors.New("collect: too many events in batch")
	// ErrUnsupportedEncoding means the Content-Encoding is not identity,
	// gzip or deflate.
	ErrUnsupportedEncoding = errors.New("collect: unsupported content encoding")
)

// FieldError describes one schema problem in an event. It wraps
// ErrInvalidEvent.
type FieldError struct {
	// Field is the JSON path of the offending field, e.g. "event",
	// "context.page.url" or, inside a batch, "batch[3].userId".
	Field string
	// Problem is a short human-readable description. It never quotes the
	// offending value.
	Problem string
}

// Error returns "<field>: <problem>".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns ErrInvalidEvent.
func (e *FieldError) Unwrap() error { return ErrInvalidEvent }
