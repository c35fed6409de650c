package privacy

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// Type is a request type.
type Type string

// Request types.
const (
	TypeAccess   Type = "access"
	TypeExport   Type = "export"
	TypeRectify  Type = "rectify"
	TypeRestrict Type = "restrict"
	TypeObject   Type = "object"
	TypeErase    Type = "erase"
)

// types lists the request types, for validation messages.
var types = []Type{TypeAccess, TypeExport, TypeRectify, TypeRestrict, TypeObject, TypeErase}

// Status is a request's or a step's status.
type Status string

// Statuses. A request is pending, running, then done, failed or partial
// (done, but a step failed or is not supported); a step is pending,
// running, then done, failed, not_supported or skipped.
const (
	StatusPending      Status = "pending"
	StatusRunning      Status = "running"
	StatusDone         Status = "done"
	StatusFailed       Status = "failed"
	StatusPartial      Status = "partial"
	StatusNotSupported Status = "not_supported"
	StatusSkipped      Status = "skipped"
)

// terminal reports whether a step with status s is over.
func (s Status) terminal() bool {
	return s == StatusDone || s == StatusFailed || s == StatusNotSupported || s == StatusSkipped
}

// Identifier kinds a request may name a person by.
const (
	KindEmail       = "email"
	KindPhone       = "phone"
	KindUserID      = "user_id"
	KindAnonymousID = "anonymous_id"
	KindCookie      = "cookie"
)

var kinds = []string{KindEmail, KindPhone, KindUserID, KindAnonymousID, KindCookie}

// KindSubject is the blind-index kind of a suppressed pseudonym (a keyed
// MAC of it, never the pseudonym).
const KindSubject = "subject"

// Step is one step of a request.
type Step struct {
	// Name: resolve, suppress, publish, ledger, events, subject_index,
	// links, profile, vault, blind_index, history, physical,
	// plugin:<name>, stream:<NAME>, verify, receipt…
	Name   string    `json:"name"`
	Status Status    `json:"status"`
	At     time.Time `json:"at,omitzero"`
	Detail string    `json:"detail,omitempty"`
}

// Options are a request's options.
type Options struct {
	// Suppress (erase): drop the person's later events at the door.
	Suppress bool `json:"suppress,omitempty"`
	// Purposes (object) objected to.
	Purposes []string `json:"purposes,omitempty"`
	// Lift (object, restrict) lifts an objection or restriction.
	Lift bool `json:"lift,omitempty"`
	// TraitNames (rectify) are the names of the new traits.
	TraitNames []string `json:"trait_names,omitempty"`
	// SealedTraits (rectify) are the new traits, sealed under the vault key
	// until the request runs (never in clear), cleared after.
	SealedTraits []byte `json:"sealed_traits,omitempty"`
	// SuppressMACs (erase with suppress) are the keyed MACs of the
	// identifier given, until the suppress step has stored them.
	SuppressMACs []SuppressMAC `json:"suppress_macs,omitempty"`
}

// SuppressMAC is a blind-index MAC to suppress.
type SuppressMAC struct {
	Kind string `json:"kind"`
	MAC  []byte `json:"mac"`
}

// Request is a privacy request as stored.
type Request struct {
	ID string `json:"id"`
	// Origin is, in cluster mode, the node that received the request when
	// this is this node's part of it ("" for a request received here).
	Origin      string     `json:"origin,omitempty"`
	Type        Type       `json:"type"`
	Site        string     `json:"site"`
	Status      Status     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	Deadline    time.Time  `json:"deadline"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// IdentifierKind is the kind of identifier the request named the
	// person by (never the value).
	IdentifierKind string `json:"identifier_kind"`
	// Subjects are the pseudonyms found, stored apart
	// (storage.PutRequestSubjects) and dropped with every version when an
	// erasure completes (and from other requests naming them), so the
	// receipt holds no identifier.
	Subjects []string `json:"-"`
	// SubjectCount is how many subjects were found.
	SubjectCount int     `json:"subject_count"`
	Steps        []Step  `json:"steps"`
	Options      Options `json:"options"`
	// Summary is what the request did, without identifiers (the receipt).
	Summary map[string]int `json:"summary,omitempty"`
	// ExportNode (an access or export request, cluster mode) is the node
	// that received the request, set by its receipt once it committed its
	// own part of the export, sealed, beside the other members' parts
	// (KV VIGIE_REQUESTS): every node then assembles the same export from
	// them (sharedExport). Empty: served by the receiving node only.
	ExportNode string `json:"export_node,omitempty"`
}

// Deadline is the legal deadline of a request made at t: one month (GDPR
// Art. 12(3)).
func Deadline(t time.Time) time.Time { return t.AddDate(0, 1, 0) }

// pluginStepPrefix starts the name of a step waiting for a plugin's
// acknowledgement: plugin:<name>, or plugin:<name>@<node> for a
// node-scoped plugin's instance on node.
const pluginStepPrefix = "plugin:"

// ackName is the name a plugin's acknowledgement goes by: the plugin's, or
// for a node-scoped plugin's instance "<plugin>@<node>".
func ackName(plugin, node string) string {
	if node == "" {
		return plugin
	}
	return plugin + "@" + node
}

// pluginStep is the step of plugin's acknowledgement (node: its instance's
// on that node, for a node-scoped plugin).
func pluginStep(plugin, node string) string { return pluginStepPrefix + ackName(plugin, node) }

// pluginStepNode is the node of a node-scoped plugin's step ("" for any
// other step).
func pluginStepNode(name string) string {
	rest, ok := strings.CutPrefix(name, pluginStepPrefix)
	if !ok {
		return ""
	}
	_, node, _ := strings.Cut(rest, "@")
	return node
}

// step returns the step named name, or nil.
func (r *Request) step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// next returns the first step not over, or nil. The steps waiting for
// other nodes (node:<id>) hold only the receipt: the steps after them run
// meanwhile.
func (r *Request) next() *Step {
	nodes := false
	for i := range r.Steps {
		st := &r.Steps[i]
		switch {
		case st.Status.terminal():
		case strings.HasPrefix(st.Name, nodeStepPrefix):
			nodes = true
		case st.Name == "receipt" && nodes:
			return nil
		default:
			return st
		}
	}
	return nil
}

// set sets a step's status, detail and time.
func (st *Step) set(s Status, detail string) {
	st.Status, st.Detail, st.At = s, detail, time.Now().UTC()
}

// finished reports whether r is over.
func (r *Request) finished() bool {
	return r.Status == StatusDone || r.Status == StatusFailed || r.Status == StatusPartial
}

// View is a request as the API shows it.
type View struct {
	ID             string     `json:"id"`
	Type           Type       `json:"type"`
	Site           string     `json:"site"`
	Status         Status     `json:"status"`
	CreatedAt      time.Time  `json:"created_at"`
	Deadline       time.Time  `json:"deadline"`
	DaysLeft       int        `json:"days_left"`
	Overdue        bool       `json:"overdue,omitempty"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
	IdentifierKind string     `json:"identifier_kind"`
	// Subjects is how many pseudonyms the request concerns (the receipt of
	// a completed erasure says how many it had).
	Subjects int               `json:"subjects"`
	Options  map[string]any    `json:"options,omitempty"`
	Steps    []Step            `json:"steps,omitempty"`
	Summary  map[string]int    `json:"summary,omitempty"`
	Links    map[string]string `json:"links,omitempty"`
}

// View returns r as the API shows it at now; steps only when withSteps.
func (r *Request) View(now time.Time, withSteps bool) View {
	v := View{ID: r.ID, Type: r.Type, Site: r.Site, Status: r.Status, CreatedAt: r.CreatedAt, Deadline: r.Deadline,
		CompletedAt: r.CompletedAt, IdentifierKind: r.IdentifierKind, Subjects: r.SubjectCount, Summary: r.Summary}
	left := r.Deadline.Sub(now).Hours() / 24
	v.DaysLeft = int(math.Ceil(left))
	if r.finished() {
		v.DaysLeft = 0
	} else if left < 0 {
		v.Overdue = true
	}
	opts := map[string]any{}
	if r.Options.Suppress {
		opts["suppress"] = true
	}
	if len(r.Options.Purposes) > 0 {
		opts["purposes"] = r.Options.Purposes
	}
	if r.Options.Lift {
		opts["lift"] = true
	}
	if len(r.Options.TraitNames) > 0 {
		opts["traits"] = r.Options.TraitNames
	}
	if len(opts) > 0 {
		v.Options = opts
	}
	if withSteps {
		v.Steps = slices.Clone(r.Steps)
	}
	if r.Type == TypeAccess || r.Type == TypeExport {
		v.Links = map[string]string{"export": "/admin/v1/privacy/requests/" + r.ID + "/export",
			"export_html": "/admin/v1/privacy/requests/" + r.ID + "/export?format=html"}
	}
	return v
}

func (r *Request) encode() ([]byte, error) { return json.Marshal(r) }

func decodeRequest(b []byte) (*Request, error) {
	r := &Request{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	return r, nil
}
