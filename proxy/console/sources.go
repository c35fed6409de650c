package console

import (
	"context"
	"time"

	"github.com/vigie-dev/vigie/plugins/rollup"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/storage"
)

// The pages whose data comes from other parts of Vigie are written against
// these interfaces; a nil source shows the page's "coming with…" state.
// Where the producing package's type can be shared, it is (aliases: the
// rollups' Overview, the sensitive-data report and the retention outlook
// of package storage, package reaction's model table). The privacy
// requests and the destinations keep their own types, in the JSON shape
// of GET /admin/v1/privacy/requests/{id} and GET /admin/v1/destinations:
// the first are declared in package privacy with typed enums, the second
// leave out the recent dead letters, which name subjects.

// OverviewSource answers the overview of a site over a period (rollups).
type OverviewSource interface {
	// Overview covers [from, to), compared with [compareFrom,
	// compareTo) unless both are zero.
	Overview(ctx context.Context, site string, from, to, compareFrom, compareTo time.Time) (Overview, error)
}

// The overview's types are the rollups' own (package rollup documents
// each field): one declaration, so the page and GET /admin/v1/overview
// cannot drift apart.
type (
	Overview        = rollup.Overview
	Counts          = rollup.Counts
	Totals          = rollup.Totals
	Point           = rollup.Point
	Period          = rollup.Period
	Entry           = rollup.Entry
	List            = rollup.List
	Top             = rollup.Top
	Live            = rollup.Live
	Consent         = rollup.Consent
	PurposeRate     = rollup.PurposeRate
	Decisions       = rollup.Decisions
	DecisionReasons = rollup.ReasonCount
)

// PrivacySource is the privacy requests (the requests API) and the
// consent ledger's statistics.
type PrivacySource interface {
	// Requests returns site's requests ("" for every site), newest first,
	// each with its steps.
	Requests(ctx context.Context, site string) ([]PrivacyRequest, error)
	// Request returns one request; ErrNotFound when there is none.
	Request(ctx context.Context, id string) (PrivacyRequest, error)
	// Create records a new request, run in the background; an error
	// wrapping ErrInvalidRequest names what is wrong with it.
	Create(ctx context.Context, r NewPrivacyRequest) (PrivacyRequest, error)
	// LedgerStats counts site's consent ledger.
	LedgerStats(ctx context.Context, site string) (LedgerStats, error)
	// Retention is what will be purged next and when, over every site.
	Retention(ctx context.Context) (Retention, error)
}

// Retention is what will be purged next and when, per kind of data
// (GET /admin/v1/retention/next): counts and times, no person named.
type Retention = storage.RetentionOutlook

// PrivacyRequest is one request with the status of each step, in the
// shape GET /admin/v1/privacy/requests/{id} answers.
type PrivacyRequest struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Site      string    `json:"site"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	Deadline  time.Time `json:"deadline"`
	// DaysLeft are the days until the deadline (0 once completed).
	DaysLeft    int        `json:"days_left"`
	Overdue     bool       `json:"overdue,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// IdentifierKind is how the person was named (never the value).
	IdentifierKind string `json:"identifier_kind"`
	// Subjects is how many pseudonyms the request concerns.
	Subjects int               `json:"subjects"`
	Options  map[string]any    `json:"options,omitempty"`
	Steps    []PrivacyStep     `json:"steps"`
	Summary  map[string]int    `json:"summary,omitempty"`
	Links    map[string]string `json:"links,omitempty"`
}

// PrivacyStep is one step of a request.
type PrivacyStep struct {
	Name   string    `json:"name"`
	Status string    `json:"status"`
	At     time.Time `json:"at,omitzero"`
	Detail string    `json:"detail,omitempty"`
}

// NewPrivacyRequest is a request to make, with the fields of POST
// /admin/v1/privacy/requests.
type NewPrivacyRequest struct {
	Type string `json:"type"`
	Site string `json:"site,omitempty"`
	// IdentifierKind (email, phone, user_id, anonymous_id, cookie) and
	// Identifier name the person.
	IdentifierKind string `json:"-"`
	Identifier     string `json:"-"`
	// Suppress (erase): drop the person's later events at the door.
	Suppress bool `json:"suppress,omitempty"`
	// Purposes (object) objected to; none: marketing.
	Purposes []string `json:"purposes,omitempty"`
	// Lift (object, restrict) lifts an objection or restriction.
	Lift bool `json:"lift,omitempty"`
	// Traits (rectify) is a JSON object of the new personal traits.
	Traits string `json:"-"`
}

// LedgerStats count the consent ledger of one site: no subject is named.
type LedgerStats struct {
	Site string `json:"site"`
	// At is when they were counted (they are cached a few minutes) and
	// Took how long the count took.
	At   time.Time     `json:"at"`
	Took time.Duration `json:"took"`
	// Entries is the subjects with an entry; Choices those whose consent
	// choice still applies, Expired those whose choice is older than the
	// site's consent lifetime (it reads as none).
	Entries  uint64          `json:"entries"`
	Choices  uint64          `json:"choices"`
	Expired  uint64          `json:"expired"`
	Lifetime time.Duration   `json:"lifetime"`
	Purposes []PurposeChoice `json:"purposes"`
	// Objections counts subjects with an objection (Objected: per
	// purpose), Restricted those whose processing is restricted.
	Objections uint64         `json:"objections"`
	Objected   []PurposeCount `json:"objected"`
	Restricted uint64         `json:"restricted"`
	// Suppressed counts the identifiers suppressed at the door (erasures
	// with suppress).
	Suppressed uint64 `json:"suppressed"`
}

// PurposeChoice counts the current choices granting and denying one
// purpose.
type PurposeChoice struct {
	Purpose string `json:"purpose"`
	Granted uint64 `json:"granted"`
	Denied  uint64 `json:"denied"`
}

// PurposeCount is a count for one purpose.
type PurposeCount struct {
	Purpose string `json:"purpose"`
	Count   uint64 `json:"count"`
}

// SensitiveSource is the special categories of data detected on a site
// (GET /admin/v1/sensitive).
type SensitiveSource interface {
	// Sensitive covers the UTC days overlapping [from, to).
	Sensitive(ctx context.Context, site string, from, to time.Time) (SensitiveReport, error)
}

// The sensitive-data report's types are storage's (the shape of GET
// /admin/v1/sensitive): counts per category and layer with redacted
// examples, never a value or a visitor.
type (
	SensitiveReport   = storage.SensitiveReport
	SensitiveCategory = storage.SensitiveCategoryRow
	SensitiveCell     = storage.SensitiveDetection
	SensitiveExample  = storage.SensitiveExample
	SensitiveDay      = storage.SensitiveDay
)

// EmailSource gives per-campaign and per-link e-mail statistics.
type EmailSource interface {
	// Campaigns covers site over [from, to), largest first.
	Campaigns(ctx context.Context, site string, from, to time.Time) ([]Campaign, error)
}

// Campaign is one campaign's opens and clicks.
type Campaign struct {
	Name   string      `json:"name"`
	Opens  EmailCounts `json:"opens"`
	Clicks EmailCounts `json:"clicks"`
	Links  []LinkStats `json:"links"`
}

// EmailCounts split opens or clicks by who made them.
type EmailCounts struct {
	Human        uint64 `json:"human"`
	PrivacyProxy uint64 `json:"privacy_proxy"`
	Scanner      uint64 `json:"scanner"`
	Unknown      uint64 `json:"unknown"`
}

// Total is the sum of every class.
func (c EmailCounts) Total() uint64 { return c.Human + c.PrivacyProxy + c.Scanner + c.Unknown }

// LinkStats are one link's clicks.
type LinkStats struct {
	URL    string      `json:"url"`
	Clicks EmailCounts `json:"clicks"`
}

// DestinationsSource lists the CRM destinations and resyncs one.
type DestinationsSource interface {
	// Destinations is GET /admin/v1/destinations' list.
	Destinations(ctx context.Context) ([]Destination, error)
	// Resync sends every consented contact again (POST
	// /admin/v1/destinations/{name}/resync).
	Resync(ctx context.Context, name string) error
}

// Destination is one CRM destination's health, in the shape of GET
// /admin/v1/destinations (its recent dead letters, which name subjects,
// are left out).
type Destination struct {
	Name      string   `json:"name"`
	Connector string   `json:"connector"`
	Purposes  []string `json:"purposes"`
	// State: ok, throttled, paused, disabled, or the process's (starting,
	// restarting, failed, stopped), unknown before the first status.
	State       string             `json:"state"`
	PausedUntil time.Time          `json:"paused_until,omitzero"`
	Reason      string             `json:"reason,omitempty"`
	RateLimit   *DestinationLimit  `json:"rate_limit,omitempty"`
	Backlog     uint64             `json:"backlog"`
	Delivered   uint64             `json:"delivered"`
	Failed      uint64             `json:"failed"`
	Retried     uint64             `json:"retried"`
	RateLimited uint64             `json:"rate_limited"`
	LastError   string             `json:"last_error,omitempty"`
	LastErrorAt time.Time          `json:"last_error_at,omitzero"`
	DeadLetters int                `json:"dead_letters"`
	Plugin      DestinationPlugin  `json:"plugin"`
	Resync      *DestinationResync `json:"resync,omitempty"`
	UpdatedAt   time.Time          `json:"updated_at,omitzero"`
}

// DestinationLimit is a destination's rate limiter.
type DestinationLimit struct {
	PerSecond      float64   `json:"per_second"`
	Burst          int       `json:"burst"`
	Limit          int       `json:"limit"`
	Remaining      int       `json:"remaining"`
	ResetAt        time.Time `json:"reset_at,omitzero"`
	ThrottledUntil time.Time `json:"throttled_until,omitzero"`
	ThrottleReason string    `json:"throttle_reason,omitempty"`
	PausedUntil    time.Time `json:"paused_until,omitzero"`
	PauseReason    string    `json:"pause_reason,omitempty"`
}

// DestinationPlugin is the destination's process.
type DestinationPlugin struct {
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	Restarts  int64     `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
}

// DestinationResync is the last full resync.
type DestinationResync struct {
	Run        string    `json:"run"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Listed     int       `json:"listed"`
	Published  int       `json:"published"`
	Delivered  uint64    `json:"delivered"`
}

// ResponseSource is the response plugin's model (GET
// /admin/v1/response/model).
type ResponseSource interface {
	// ResponseModel is site's table of contact types × message types.
	ResponseModel(ctx context.Context, site string) (ResponseTable, error)
}

// The response model's table is package reaction's (GET
// /admin/v1/response/model): aggregates per contact type and message
// type, no person.
type (
	ResponseTable       = reaction.Table
	ResponseContactType = reaction.ContactType
	ResponseCell        = reaction.Cell
)
