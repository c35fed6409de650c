package privacy

import (
	"context"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// AuditEntry is one line of the audit trail: who did what, when, to which
// fields, never their values (storage.AuditEntry).
type AuditEntry struct {
	// At is when it happened (zero: now).
	At time.Time `json:"at"`
	// Actor is who: TokenActor for an admin call, "plugin:<name>", or
	// PreferenceSource.
	Actor string `json:"actor"`
	// Action is what, e.g. "privacy.request.erase", ActionContactsResolve.
	Action string `json:"action"`
	// Site concerned, if any.
	Site string `json:"site,omitempty"`
	// RequestID is the privacy request concerned, if any.
	RequestID string `json:"request_id,omitempty"`
	// Fields are the names of the fields given or changed.
	Fields []string `json:"fields,omitempty"`
	// Count is how many subjects or items, if known.
	Count int `json:"count,omitempty"`
}

// Auditor records audit entries.
type Auditor interface {
	Audit(ctx context.Context, e AuditEntry) error
}

// ActionContactsResolve is the audit action of contact details given to a
// plugin.
const ActionContactsResolve = "contacts.resolve"

// StoreAuditor is the Auditor writing to the store's audit trail
// (au/ keys, kept storage.Retention.Audit).
type StoreAuditor struct {
	Store *storage.Store
}

var _ Auditor = StoreAuditor{}

// Audit implements Auditor.
func (a StoreAuditor) Audit(ctx context.Context, e AuditEntry) error {
	return a.Store.AppendAudit(ctx, storage.AuditEntry(e))
}

// actorKey is the context key of the actor.
type actorKey struct{}

// WithActor returns ctx naming actor as who acts (the admin API sets it
// from the token it checked).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom is the actor WithActor put in ctx, or "unknown".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "unknown"
}

// TokenActor names an API token as an actor: its id and role, never the
// token ("token:t1 (admin)").
func TokenActor(id, role string) string { return "token:" + id + " (" + role + ")" }

// PluginActor names a plugin as an actor ("plugin:crm").
func PluginActor(name string) string { return "plugin:" + name }

// noAudit is the default Auditor: it records nothing.
type noAudit struct{}

func (noAudit) Audit(context.Context, AuditEntry) error { return nil }
