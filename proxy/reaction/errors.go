package reaction

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrUnknownMessageType: a message type the plugin is not configured
	// with.
	ErrUnknownMessageType = errors.New("reaction: unknown message type")
	// ErrUnknownContactType: a contact type the plugin is not configured
	// with (nor "other").
	ErrUnknownContactType = errors.New("reaction: unknown contact type")
	// ErrNoCandidates: no candidate message type to choose among.
	ErrNoCandidates = errors.New("reaction: no candidate message types")
	// ErrNoConversions: the message type counts no conversion, so its
	// holdout cannot be compared.
	ErrNoConversions = errors.New("reaction: message type counts no conversion")
	// ErrUnknownSubject: the subject has no profile on the site.
	ErrUnknownSubject = errors.New("reaction: no profile for this subject")
	// ErrNotModelled: the subject's consent or objection keeps it out of
	// the model.
	ErrNotModelled = errors.New("reaction: subject not modelled")
	// ErrUnavailable: the model's state could not be read.
	ErrUnavailable = errors.New("reaction: model state unavailable")
)
