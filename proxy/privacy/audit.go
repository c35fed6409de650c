package privacy

import (
	"context"
	"time"
)

// AuditEntry is one line of the audit trail: who did what, when, on which
// fields, never the values.
type AuditEntry struct {
	// At is when it happened.
	At time.Time `json:"at"`
	// Actor is who did it: "admin" for the admin API, "plugin:<name>".
	Actor string `json:"actor"`
	// Action is e.g. privacy.request.erase, privacy.request.done.
	Action string `json:"action"`
	// Site is the site concerned.
	Site string `json:"site"`
	// RequestID is the privacy request.
	RequestID string `json:"request_id"`
	// Fields names the fields concerned (identifier kind, trait names…).
	Fields []string `json:"fields,omitempty"`
}

// Auditor records audit entries. Audit must not block for long; an entry it
// cannot record is its own concern (it is not a reason to refuse a
// request).
type Auditor interface {
	Audit(ctx context.Context, e AuditEntry)
}

// noAudit is the default Auditor.
type noAudit struct{}

func (noAudit) Audit(context.Context, AuditEntry) {}
