package collect

import (
	"fmt"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Event types, as found in Message.Type.
const (
	TypeTrack    = "track"
	TypePage     = "page"
	TypeScreen   = "screen"
	TypeIdentify = "identify"
	TypeGroup    = "group"
	TypeAlias    = "alias"
)

// Size limits of the Segment HTTP Tracking API.
const (
	// MaxEventBytes is the largest accepted single event (32 KB).
	MaxEventBytes = 32 << 10
	// MaxBatchBytes is the largest accepted batch body (500 KB).
	MaxBatchBytes = 500 << 10
	// DefaultMaxEvents is the default cap on events in one batch.
	DefaultMaxEvents = 2500
)

// maxFutureSkew bounds how far in the future EventTime may place an event.
const maxFutureSkew = 24 * time.Hour

// Message is one decoded Segment event. Its strings and raw JSON values do
// not alias the decoded body.
type Message struct {
	// Type is one of the Type* constants (lowercase), taken from the route
	// or, when the route does not imply one, from the body's "type".
	Type string
	// MessageID is the client's deduplication id.
	MessageID string
	// AnonymousID is the anonymous visitor id; JSON numbers are accepted
	// and kept as their decimal text.
	AnonymousID string
	// UserID is the known-user id; JSON numbers are accepted as for
	// AnonymousID.
	UserID string
	// GroupID is the group (account) id of a group call.
	GroupID string
	// PreviousID is the former id of an alias call.
	PreviousID string
	// Event is the name of a track event.
	Event string
	// Name is the page or screen name.
	Name string
	// Category is the page category.
	Category string
	// Timestamp is the client's event time; zero if absent.
	Timestamp time.Time
	// SentAt is when the client sent the request; zero if absent.
	SentAt time.Time
	// OriginalTimestamp is the device clock's event time; zero if absent.
	OriginalTimestamp time.Time
	// WriteKey is the source's write key when sent in the body.
	WriteKey string
	// Index is the event's position in the request's "batch" array (0 for
	// a single event), so that a later per-event error can name it.
	Index int
	// Context is the event context.
	Context Context
	// Properties is the raw properties object, or nil.
	Properties jsontext.Value
	// Traits is the raw traits object (top-level, else context.traits), or
	// nil.
	Traits jsontext.Value
}

// Context is the subset of a Segment context that Vigie uses.
type Context struct {
	// IP is the client IP the sender asserts (context.ip).
	IP string
	// UserAgent is context.userAgent.
	UserAgent string
	// Locale is context.locale, e.g. "fr-FR".
	Locale string
	// Timezone is context.timezone, e.g. "Europe/Paris".
	Timezone string
	// Page is context.page.
	Page Page
	// Campaign is context.campaign (UTM parameters).
	Campaign Campaign
	// Library is context.library.
	Library Library
	// Consent is the raw context.consent object, or nil.
	Consent jsontext.Value
	// ConsentManagement is the raw context.consentManagement object of
	// RudderStack's JavaScript SDK (allowed and denied consent ids), or nil.
	ConsentManagement jsontext.Value
}

// Page is context.page.
type Page struct {
	// Path is the URL path.
	Path string
	// URL is the full URL.
	URL string
	// Referrer is the referring URL.
	Referrer string
	// Title is the document title.
	Title string
	// Search is the query string, including "?".
	Search string
}

// Campaign is context.campaign.
type Campaign struct {
	// Name is utm_campaign.
	Name string
	// Source is utm_source.
	Source string
	// Medium is utm_medium.
	Medium string
	// Term is utm_term.
	Term string
	// Content is utm_content.
	Content string
}

// Library is context.library.
type Library struct {
	// Name is the client library name, e.g. "analytics.js".
	Name string
	// Version is the client library version.
	Version string
}

// Batch is a decoded /v1/batch (or /v1/import, /v1/b) body.
type Batch struct {
	// WriteKey is the batch-level write key, if any.
	WriteKey string
	// SentAt is the batch-level sentAt, if any.
	SentAt time.Time
	// Context is the batch-level context. It has already been merged into
	// each message where the message lacked a field.
	Context Context
	// Messages are the valid events, in body order.
	Messages []Message
	// Errors lists the events that were dropped, in body order.
	Errors []ItemError
}

// ItemError is a per-event problem in a batch; the good events are kept.
type ItemError struct {
	// Index is the event's position in the "batch" array.
	Index int
	// MessageID is the event's messageId, when it could be read.
	MessageID string
	// Err wraps ErrInvalidEvent (as a *FieldError) or ErrTooLarge.
	Err error
}

// Error describes the problem.
func (e ItemError) Error() string { return fmt.Sprintf("batch[%d]: %v", e.Index, e.Err) }

// Unwrap returns Err.
func (e ItemError) Unwrap() error { return e.Err }

// SnippetLibrary is context.library.name of Vigie's browser snippet. Its
// hits carry no identifier at all: the server assigns one (a first-party
// cookie) once consent allows it, so Validate does not require one.
const SnippetLibrary = "vigie.js"

// Validate applies Segment's rules: the type is known; userId or
// anonymousId is set (except for the snippet's hits); track needs event; group needs groupId; alias needs
// userId and previousId. It returns a *FieldError wrapping ErrInvalidEvent.
func (m *Message) Validate() error {
	switch m.Type {
	case TypeTrack, TypePage, TypeScreen, TypeIdentify, TypeGroup, TypeAlias:
	case "":
		return &FieldError{Field: "type", Problem: "is required"}
	default:
		return &FieldError{Field: "type", Problem: "unknown event type"}
	}
	if m.UserID == "" && m.AnonymousID == "" && m.Context.Library.Name != SnippetLibrary {
		return &FieldError{Field: "userId", Problem: "userId or anonymousId is required"}
	}
	switch m.Type {
	case TypeTrack:
		if m.Event == "" {
			return &FieldError{Field: "event", Problem: "is required for track"}
		}
	case TypeGroup:
		if m.GroupID == "" {
			return &FieldError{Field: "groupId", Problem: "is required for group"}
		}
	case TypeAlias:
		if m.UserID == "" {
			return &FieldError{Field: "userId", Problem: "is required for alias"}
		}
		if m.PreviousID == "" {
			return &FieldError{Field: "previousId", Problem: "is required for alias"}
		}
	}
	return nil
}

// EventTime applies Segment's clock-skew correction. With Timestamp and
// SentAt it returns receivedAt - (SentAt - Timestamp); with only Timestamp,
// Timestamp; with OriginalTimestamp and SentAt (no Timestamp), the same
// correction applied to OriginalTimestamp; otherwise receivedAt. The result
// is never more than 24 hours after receivedAt.
func (m *Message) EventTime(receivedAt time.Time) time.Time {
	var t time.Time
	switch {
	case !m.Timestamp.IsZero() && !m.SentAt.IsZero():
		t = receivedAt.Add(-m.SentAt.Sub(m.Timestamp))
	case !m.Timestamp.IsZero():
		t = m.Timestamp
	case !m.OriginalTimestamp.IsZero() && !m.SentAt.IsZero():
		t = receivedAt.Add(-m.SentAt.Sub(m.OriginalTimestamp))
	default:
		return receivedAt
	}
	if limit := receivedAt.Add(maxFutureSkew); t.After(limit) {
		return limit
	}
	return t
}
