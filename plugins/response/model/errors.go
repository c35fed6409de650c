package model

import "errors"

// Sentinel errors, wrapped with %w by the functions that return them.
var (
	// ErrConfig means a Config is invalid; the message names the field.
	ErrConfig = errors.New("response model: invalid configuration")
	// ErrUnknownMessageType means a message type is not in the Config.
	ErrUnknownMessageType = errors.New("response model: unknown message type")
	// ErrUnknownContactType means a contact type is not in the Config
	// (nor Other).
	ErrUnknownContactType = errors.New("response model: unknown contact type")
	// ErrNoCandidates means Next was given no candidate message type.
	ErrNoCandidates = errors.New("response model: no candidate message types")
	// ErrNoConversions means Uplift was asked for a message type that
	// counts no conversion event: a holdout can only be compared on
	// conversions.
	ErrNoConversions = errors.New("response model: message type counts no conversion")
	// ErrInvalid means an Exposure or Response lacks a subject or a time.
	ErrInvalid = errors.New("response model: invalid input")
	// ErrCorrupt means encoded state is damaged or not state at all.
	ErrCorrupt = errors.New("response model: corrupt state")
	// ErrVersion means encoded state was written by a newer format
	// version than this package reads.
	ErrVersion = errors.New("response model: unsupported state version")
	// ErrReadOnly means a summary (NewSummary), which holds cells but no
	// subjects, was asked to record or load subjects.
	ErrReadOnly = errors.New("response model: read-only summary")
)
