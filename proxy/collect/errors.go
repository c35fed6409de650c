package collect

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap exactly one of them;
// test with errors.Is. [Describe] gives an error's text for the client.
var (
	// ErrMalformedJSON means the body is not syntactically valid JSON.
	ErrMalformedJSON = errors.New("collect: malformed JSON")
	// ErrInvalidEvent means the JSON is well formed but an event breaks the
	// Segment schema (wrong type, missing required field) or Vigie's JSON
	// limits (MaxDepth, MaxNumberLength). The concrete error is a
	// *FieldError.
	ErrInvalidEvent = errors.New("collect: invalid event")
	// ErrTooLarge means an event exceeds its size limit (MaxEventBytes by
	// default) or a body exceeds the limit given to ReadBody.
	ErrTooLarge = errors.New("collect: payload too large")
	// ErrTooManyEvents means a batch holds more events than allowed.
	ErrTooManyEvents = errors.New("collect: too many events in batch")
	// ErrUnsupportedEncoding means the Content-Encoding is not identity,
	// gzip or deflate.
	ErrUnsupportedEncoding = errors.New("collect: unsupported content encoding")
	// ErrCorruptEncoding means a gzip or deflate body does not inflate.
	ErrCorruptEncoding = errors.New("collect: corrupt compressed body")
	// ErrBodyTimeout means the body did not arrive before the connection's
	// read deadline.
	ErrBodyTimeout = errors.New("collect: body read timed out")
	// ErrIncompleteBody means the body ended before its Content-Length or
	// its last chunk.
	ErrIncompleteBody = errors.New("collect: body ended early")
	// ErrUnreadableBody means the body could not be read for another
	// reason (malformed chunked encoding, broken connection).
	ErrUnreadableBody = errors.New("collect: body could not be read")
)

// FieldError describes one schema problem in an event. It wraps
// ErrInvalidEvent.
type FieldError struct {
	// Field is the JSON path of the offending field, e.g. "event",
	// "context.page.url", "properties.a.b[2]" or, inside a batch,
	// "batch[3].userId".
	Field string
	// Problem is a short human-readable description. It never quotes the
	// offending value.
	Problem string
}

// Error returns "<field>: <problem>".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns ErrInvalidEvent.
func (e *FieldError) Unwrap() error { return ErrInvalidEvent }

// problem is an error of this package other than a *FieldError: a
// sentinel and the text that describes it to the client.
type problem struct {
	kind error
	text string
}

func (p *problem) Error() string { return p.kind.Error() + ": " + p.text }
func (p *problem) Unwrap() error { return p.kind }

// fail returns an error wrapping kind whose client text is the formatted
// message. Nothing formatted into it may come from the input or from
// another package's error.
func fail(kind error, format string, a ...any) error {
	return &problem{kind: kind, text: fmt.Sprintf(format, a...)}
}

// Describe returns the description of err for the client that sent the
// request, in the terms of the HTTP API: a field path, a limit, a byte
// offset. It never holds an input value, a Go type, an address or another
// package's error text. err should come from this package; any other error
// gets a generic description.
func Describe(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	var p *problem
	if errors.As(err, &p) {
		return p.text
	}
	for _, d := range descriptions {
		if errors.Is(err, d.kind) {
			return d.text
		}
	}
	return "the request could not be processed"
}

// descriptions are the client texts of the sentinels returned bare.
var descriptions = [...]struct {
	kind error
	text string
}{
	{ErrMalformedJSON, "body is not valid JSON"},
	{ErrInvalidEvent, "invalid event"},
	{ErrTooLarge, "body is too large"},
	{ErrTooManyEvents, "too many events in the batch"},
	{ErrUnsupportedEncoding, "Content-Encoding must be gzip, deflate or identity"},
	{ErrCorruptEncoding, "body is not valid gzip or deflate data"},
	{ErrBodyTimeout, "body was not fully received within the time allowed"},
	{ErrIncompleteBody, "body ended before its announced length"},
	{ErrUnreadableBody, "body could not be received: malformed chunked encoding or broken connection"},
}
