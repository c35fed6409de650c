package console

import (
	"context"
	"time"
)

// The pages whose data comes from parts built later are written against
// these interfaces; a nil source shows the page's "coming with…" state.
// Their types have the JSON shape of the producing packages' own (the
// rollups' Overview, the privacy requests' Request), so an adapter may be a
// JSON round trip.

// OverviewSource answers the overview of a site over a period (rollups).
type OverviewSource interface {
	// Overview covers [from, to), compared with [compareFrom,
	// compareTo) unless both are zero.
	Overview(ctx context.Context, site string, from, to, compareFrom, compareTo time.Time) (Overview, error)
}

// Overview is one site over one period.
type Overview struct {
	Site     string    `json:"site"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Interval string    `json:"interval"` // "hour" or "day": the step of Series
	Totals   Totals    `json:"totals"`
	Series   []Point   `json:"series"`
	Compare  *Period   `json:"compare,omitempty"`
	Top      Top       `json:"top"`
	Types    []Entry   `json:"types"`
	Live     Live      `json:"live"`
	Consent  Consent   `json:"consent"`
	// Decisions count the hits kept pseudonymous, anonymous or dropped,
	// and why.
	Decisions Decisions `json:"decisions"`
}

// Counts are counts of stored events.
type Counts struct {
	Visits    uint64 `json:"visits"`
	PageViews uint64 `json:"page_views"`
	Events    uint64 `json:"events"`
}

// Totals are a period's figures.
type Totals struct {
	Visitors uint64 `json:"visitors"`
	Counts
	Anonymous    Counts `json:"anonymous"`
	Pseudonymous Counts `json:"pseudonymous"`
}

// Point is one step of a series.
type Point struct {
	Start time.Time `json:"start"`
	Totals
}

// Period is a comparison period.
type Period struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Totals Totals    `json:"totals"`
	Series []Point   `json:"series"`
}

// Entry is one value of a top list.
type Entry struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
}

// List is a top list.
type List struct {
	Entries []Entry `json:"entries"`
	Other   uint64  `json:"other"`
	Total   uint64  `json:"total"`
}

// Top are the overview's top lists.
type Top struct {
	Pages      List `json:"pages"`
	EntryPages List `json:"entry_pages"`
	Sources    List `json:"sources"`
	Campaigns  List `json:"campaigns"`
	UTMSources List `json:"utm_sources"`
	UTMMediums List `json:"utm_mediums"`
	Countries  List `json:"countries"`
	Devices    List `json:"devices"`
	Browsers   List `json:"browsers"`
	OSes       List `json:"oses"`
}

// Live is the last five minutes.
type Live struct {
	Since    time.Time `json:"since"`
	Events   uint64    `json:"events"`
	Visitors uint64    `json:"visitors"`
}

// Consent gives, per purpose, the share of hits that granted it.
type Consent struct {
	Basis    string        `json:"basis"`
	Total    uint64        `json:"total"`
	Purposes []PurposeRate `json:"purposes"`
}

// PurposeRate is one purpose's consent rate (0–1).
type PurposeRate struct {
	Purpose string  `json:"purpose"`
	Granted uint64  `json:"granted"`
	Rate    float64 `json:"rate"`
}

// Decisions are a period's ingestion outcomes.
type Decisions struct {
	Pseudonymous uint64            `json:"pseudonymous"`
	Anonymous    uint64            `json:"anonymous"`
	Dropped      uint64            `json:"dropped"`
	Reasons      []DecisionReasons `json:"reasons"`
}

// DecisionReasons is the number of hits with one outcome and reason.
type DecisionReasons struct {
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Count   uint64 `json:"count"`
}

// PrivacySource lists the privacy requests (the requests API).
type PrivacySource interface {
	// Requests returns site's requests ("" for every site), newest first.
	Requests(ctx context.Context, site string) ([]PrivacyRequest, error)
}

// PrivacyRequest is one request with the status of each step.
type PrivacyRequest struct {
	ID             string        `json:"id"`
	Type           string        `json:"type"`
	Site           string        `json:"site"`
	Status         string        `json:"status"`
	CreatedAt      time.Time     `json:"created_at"`
	Deadline       time.Time     `json:"deadline"`
	CompletedAt    *time.Time    `json:"completed_at,omitempty"`
	IdentifierKind string        `json:"identifier_kind"`
	SubjectCount   int           `json:"subject_count"`
	Steps          []PrivacyStep `json:"steps"`
}

// PrivacyStep is one step of a request.
type PrivacyStep struct {
	Name   string    `json:"name"`
	Status string    `json:"status"`
	At     time.Time `json:"at,omitzero"`
	Detail string    `json:"detail,omitempty"`
}

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
	Destinations(ctx context.Context) ([]Destination, error)
	// Resync sends every member of the destination's segments again.
	Resync(ctx context.Context, name string) error
}

// Destination is one CRM destination's health.
type Destination struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	State       string    `json:"state"`
	Lag         uint64    `json:"lag"`
	DeadLetters int       `json:"dead_letters"`
	Synced      uint64    `json:"synced"`
	LastSync    time.Time `json:"last_sync,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}
