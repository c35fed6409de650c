package webhook

import (
	"encoding/json"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
)

// Message types, one per kind of change (README.md documents the shapes).
const (
	TypeContactUpserted     = "contact.upserted"
	TypeContactDeleted      = "contact.deleted"
	TypeContactUnsubscribed = "contact.unsubscribed"
	TypeSegmentEntered      = "segment.entered"
	TypeSegmentExited       = "segment.exited"
	TypeConsentChanged      = "consent.changed"
)

// types maps change kinds to message types.
var types = map[delivery.Kind]string{
	delivery.KindUpsert:         TypeContactUpserted,
	delivery.KindDelete:         TypeContactDeleted,
	delivery.KindUnsubscribe:    TypeContactUnsubscribed,
	delivery.KindSegmentEntered: TypeSegmentEntered,
	delivery.KindSegmentExited:  TypeSegmentExited,
	delivery.KindConsentChanged: TypeConsentChanged,
}

// timestampLayout is RFC 3339 in UTC with milliseconds.
const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

// Message is a webhook's body: the Standard Webhooks envelope.
type Message struct {
	// Type is one of the Type constants.
	Type string `json:"type"`
	// Timestamp is when the change happened (UTC, milliseconds).
	Timestamp string `json:"timestamp"`
	// Data is the type's payload.
	Data any `json:"data"`
}

// subjectData is what every payload starts with.
type subjectData struct {
	// Site is the Vigie site.
	Site string `json:"site"`
	// Subject is Vigie's pseudonymous, stable id of the person.
	Subject string `json:"subject"`
}

// contactData is contact.upserted's payload.
type contactData struct {
	subjectData
	Email      string         `json:"email"`
	Properties map[string]any `json:"properties"`
	Segments   []string       `json:"segments"`
	Score      *float64       `json:"score,omitempty"`
}

// addressData is contact.deleted's and contact.unsubscribed's payload.
type addressData struct {
	subjectData
	Email string `json:"email"`
}

// segmentData is segment.entered's and segment.exited's payload.
type segmentData struct {
	subjectData
	Email   string `json:"email,omitempty"`
	Segment string `json:"segment"`
}

// consentData is consent.changed's payload.
type consentData struct {
	subjectData
	Email    string   `json:"email,omitempty"`
	Purposes []string `json:"purposes"`
}

// NewMessage is the message for c; now stands for a zero c.At.
func NewMessage(c delivery.Change, now time.Time) Message {
	at := c.At
	if at.IsZero() {
		at = now
	}
	m := Message{Type: types[c.Kind], Timestamp: at.UTC().Format(timestampLayout)}
	sd := subjectData{Site: c.Site, Subject: c.Subject}
	switch c.Kind {
	case delivery.KindUpsert:
		d := contactData{subjectData: sd, Email: c.Email, Properties: c.Properties, Segments: c.Segments, Score: c.Score}
		if d.Properties == nil {
			d.Properties = map[string]any{}
		}
		if d.Segments == nil {
			d.Segments = []string{}
		}
		m.Data = d
	case delivery.KindDelete, delivery.KindUnsubscribe:
		m.Data = addressData{subjectData: sd, Email: c.Email}
	case delivery.KindSegmentEntered, delivery.KindSegmentExited:
		m.Data = segmentData{subjectData: sd, Email: c.Email, Segment: c.Segment}
	case delivery.KindConsentChanged:
		d := consentData{subjectData: sd, Email: c.Email, Purposes: c.Purposes}
		if d.Purposes == nil {
			d.Purposes = []string{}
		}
		m.Data = d
	}
	return m
}

// Encode is m as compact JSON, the exact bytes sent and signed.
func (m Message) Encode() ([]byte, error) { return json.Marshal(m) }

// MessageID is the webhook-id of c: "msg_" and the change's ID, the same
// for every attempt, so receivers can deduplicate.
func MessageID(c delivery.Change) string { return "msg_" + c.ID() }
