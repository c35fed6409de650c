package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Kind is what a Change does to a contact downstream.
type Kind string

// Kinds of change. Email is required for KindUpsert, KindDelete and
// KindUnsubscribe; connectors that address contacts by e-mail (HubSpot,
// Brevo) also need it for the others.
const (
	// KindUpsert creates or updates a consented contact with its mapped
	// properties, current segments and score.
	KindUpsert Kind = "upsert"
	// KindDelete deletes the contact downstream (erasure).
	KindDelete Kind = "delete"
	// KindUnsubscribe unsubscribes or blacklists the contact (objection,
	// withdrawal of a purpose the destination needs).
	KindUnsubscribe Kind = "unsubscribe"
	// KindSegmentEntered records that the contact entered Segment.
	KindSegmentEntered Kind = "segment_entered"
	// KindSegmentExited records that the contact left Segment.
	KindSegmentExited Kind = "segment_exited"
	// KindConsentChanged records the purposes the contact grants now (a
	// change that still grants the destination's purposes; one that no
	// longer does is a KindUnsubscribe).
	KindConsentChanged Kind = "consent_changed"
)

// Change is one thing to deliver to a destination about one contact.
type Change struct {
	// Kind is what to do. Required.
	Kind Kind
	// Site is the Vigie site the subject belongs to. Required.
	Site string
	// Subject is Vigie's pseudonymous id of the person. Required.
	Subject string
	// EventID identifies what caused the change (the event, segment
	// transition, privacy request or resync run). Required: with Site,
	// Subject, Kind and Segment it makes the change's ID.
	EventID string
	// At is when the change happened. Default: the time it is delivered.
	At time.Time
	// Email is the contact's address, from the vault.
	Email string
	// Properties are the contact's fields already mapped to destination
	// property names (upsert only). Values are strings, numbers or bools.
	Properties map[string]any
	// Segments are the contact's current segments (upsert only).
	Segments []string
	// Score is the contact's lead score (upsert only); nil: not sent.
	Score *float64
	// Segment is the segment entered or left (segment kinds only).
	Segment string
	// Purposes are the purposes granted now (consent_changed only).
	Purposes []string
}

// ID is the change's idempotency key: a hex digest of site, subject,
// kind, segment and event id. The same change delivered twice has the
// same ID, so receivers (and trace ids sent to CRMs) can deduplicate; it
// contains no dot and no personal datum.
func (c Change) ID() string {
	h := sha256.New()
	for _, s := range []string{c.Site, c.Subject, string(c.Kind), c.Segment, c.EventID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Validate reports a change that lacks what its kind needs.
func (c Change) Validate() error {
	fail := func(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidChange, msg) }
	switch c.Kind {
	case KindUpsert, KindDelete, KindUnsubscribe:
		if c.Email == "" {
			return fail(string(c.Kind) + " needs an e-mail address")
		}
	case KindSegmentEntered, KindSegmentExited:
		if c.Segment == "" {
			return fail(string(c.Kind) + " needs a segment")
		}
	case KindConsentChanged:
	default:
		return fail(fmt.Sprintf("unknown kind %q", c.Kind))
	}
	switch {
	case c.Site == "":
		return fail("site is required")
	case c.Subject == "":
		return fail("subject is required")
	case c.EventID == "":
		return fail("event id is required")
	}
	return nil
}

// InSegment reports whether segment is among c.Segments.
func (c Change) InSegment(segment string) bool {
	return slices.Contains(c.Segments, segment)
}
