package console

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// Kinds of Decision.
const (
	// KindStored: the event was stored (pseudonymous or anonymous).
	KindStored = "stored"
	// KindDropped: consent allowed nothing and the site drops such hits.
	KindDropped = "dropped"
	// KindBot: a bot's hit, counted and not stored.
	KindBot = "bot"
	// KindRejected: the request (or some of its events) was refused.
	KindRejected = "rejected"
	// KindDuplicate: a messageId already stored; nothing new was kept.
	KindDuplicate = "duplicate"
	// KindFailed: storing failed (503 to the client, who retries).
	KindFailed = "failed"
)

// Signal is one consent signal a decision saw: where it came from and what
// it granted and denied (purpose names).
type Signal struct {
	Source  string   `json:"source"`
	Granted []string `json:"granted,omitempty"`
	Denied  []string `json:"denied,omitempty"`
}

// Decision is why one hit was kept the way it was, or why it was not. It
// holds no personal data but the pseudonym, shown to admins only: never
// an address, a user agent, a value the scrubber removed or a write key.
type Decision struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	// EventID is the stored event's id (Kind stored, duplicate, failed).
	EventID string `json:"event_id,omitempty"`
	// Type is the event type (track, page…), when the hit was decoded.
	Type string `json:"type,omitempty"`
	// Mode is pseudonymous, anonymous or drop: what consent allowed.
	Mode string `json:"mode,omitempty"`
	// Purposes are the purposes granted.
	Purposes []string `json:"purposes,omitempty"`
	// Reason is consent's reason for Mode ("explicit grant", "gpc
	// denial"…), or why the hit was refused ("origin", "write_key",
	// "bot"…).
	Reason string `json:"reason"`
	// Signals are the consent signals the decision saw.
	Signals []Signal `json:"signals,omitempty"`
	// Scrubbed counts, by class, what the scrubber removed (never the
	// values).
	Scrubbed map[string]int `json:"scrubbed,omitempty"`
	// KeyID is the pseudonymization key's id (pseudonymous events).
	KeyID string `json:"key_id,omitempty"`
	// Subject is the pseudonym (pseudonymous events): admins only.
	Subject string `json:"subject,omitempty"`
	// Route is the route pattern a rejected request came to.
	Route string `json:"route,omitempty"`
	// Count is how many events the record stands for (a batch's rejected
	// events); 1 when not set.
	Count int `json:"count,omitempty"`
}

// DefaultDecisionsPerSite is how many decisions a DecisionLog keeps per
// site (and for requests no site could be told for).
const DefaultDecisionsPerSite = 500

// DecisionLog keeps the last decisions of each site, in memory only, in a
// bounded ring per site: the live events page's "why". It is safe for
// concurrent use; Add costs a lock and a copy.
type DecisionLog struct {
	per   int
	mu    sync.Mutex
	rings map[string]*ring
}

type ring struct {
	buf  []Decision
	next int
	full bool
}

// NewDecisionLog keeps per decisions per site (DefaultDecisionsPerSite if
// per <= 0).
func NewDecisionLog(per int) *DecisionLog {
	if per <= 0 {
		per = DefaultDecisionsPerSite
	}
	return &DecisionLog{per: per, rings: map[string]*ring{}}
}

// NoSite is the ring of requests refused before their site was known (an
// unknown write key, a malformed body).
const NoSite = ""

// maxSites bounds the rings (sites are configured, so this is generous).
const maxSites = 4096

// Add records d for site (NoSite when unknown).
func (l *DecisionLog) Add(site string, d Decision) {
	if d.At.IsZero() {
		d.At = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rings[site]
	if r == nil {
		if len(l.rings) >= maxSites {
			return
		}
		r = &ring{buf: make([]Decision, l.per)}
		l.rings[site] = r
	}
	r.buf[r.next] = d
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// Mark changes the kind (and reason, when not empty) of the recent
// decision of site about event id: a stored event found to be a
// duplicate, or whose commit failed.
func (l *DecisionLog) Mark(site, eventID, kind, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rings[site]
	if r == nil || eventID == "" {
		return
	}
	for i := range r.buf {
		if r.buf[i].EventID == eventID {
			r.buf[i].Kind = kind
			if reason != "" {
				r.buf[i].Reason = reason
			}
			return
		}
	}
}

// Recent returns site's decisions, newest first.
func (l *DecisionLog) Recent(site string) []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rings[site]
	if r == nil {
		return nil
	}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Decision, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// ReasonCount is how many recent hits had one kind, mode and reason.
type ReasonCount struct {
	Kind   string `json:"kind"`
	Mode   string `json:"mode,omitempty"`
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// Summary counts site's recent decisions by kind, mode and reason, largest
// first: what a role that may not see events one by one is shown.
func Summary(ds []Decision) []ReasonCount {
	type key struct{ kind, mode, reason string }
	m := map[key]int{}
	for _, d := range ds {
		n := d.Count
		if n <= 0 {
			n = 1
		}
		m[key{d.Kind, d.Mode, d.Reason}] += n
	}
	out := make([]ReasonCount, 0, len(m))
	for k, n := range m {
		out = append(out, ReasonCount{Kind: k.kind, Mode: k.mode, Reason: k.reason, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return slices.Compare([]string{out[i].Kind, out[i].Mode, out[i].Reason}, []string{out[j].Kind, out[j].Mode, out[j].Reason}) < 0
	})
	return out
}
