package config

import (
	"github.com/vigie-dev/vigie/consent"
	"strings"

	"fmt"
	"slices"
	"time"
)

// Retention keys that are not event retentions.
const (
	// RetentionAudit is the retention key of the audit trail.
	RetentionAudit = "audit"
	// RetentionRequests is the retention key of completed privacy
	// requests.
	RetentionRequests = "requests"
	// RetentionAnonymous is the retention key of anonymous events.
	RetentionAnonymous = "anonymous"
	// RetentionRollups is the retention key of the overview's aggregates
	// (hourly and daily rollups, ingestion decision counters), counted
	// from the end of their hour or day.
	RetentionRollups = "rollups"
	// RetentionImported is the retention key of imported records (the
	// events of an import, counted from each row's time), whatever their
	// purposes.
	RetentionImported = "imported"
)

// MinRollupRetention is the shortest retention.rollups accepted (the
// rollups have no "forever").
const MinRollupRetention = time.Hour

// MinStreamMaxAge is the shortest nats.max_age accepted: below it a
// plugin restarting or a short NATS outage would lose messages.
const MinStreamMaxAge = time.Hour

// EventRetentions are the retentions that apply to events, and so to what
// the streams carry: one per configured purpose that has one, and
// anonymous and imported. A zero retention (keep forever) is left out. Keys are
// "retention.<name>".
func (c *Config) EventRetentions() map[string]time.Duration {
	out := map[string]time.Duration{}
	for k, v := range c.Retention {
		if v <= 0 {
			continue
		}
		if k == RetentionAnonymous || k == RetentionImported || slices.ContainsFunc(c.Purposes, func(p consent.PurposeInfo) bool { return string(p.Name) == k }) {
			out["retention."+k] = time.Duration(v)
		}
	}
	return out
}

// ShortestRetention is the shortest event retention and its field name
// ("", 0 when every event is kept forever).
func (c *Config) ShortestRetention() (field string, d time.Duration) {
	for k, v := range c.EventRetentions() {
		if d == 0 || v < d || (v == d && k < field) {
			field, d = k, v
		}
	}
	return field, d
}

// LongestRetention is the longest event retention (0 when there is none):
// the bound of what plugins may keep.
func (c *Config) LongestRetention() time.Duration {
	var d time.Duration
	for _, v := range c.EventRetentions() {
		d = max(d, v)
	}
	return d
}

// RetentionOf is retention.<key> (0 when absent: forever).
func (c *Config) RetentionOf(key string) time.Duration { return time.Duration(c.Retention[key]) }

// validateRights checks the organization's entries and the streams'
// MaxAge against the retentions. That production needs the organization's
// name and contact is a preflight check (OrganizationProblem), so that
// `vigie check` reports it with the key custody rules.
func (c *Config) validateRights() []error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...)))
	}
	age := time.Duration(c.NATS.MaxAge)
	switch field, shortest := c.ShortestRetention(); {
	case age < MinStreamMaxAge:
		bad("nats.max_age", "%s is shorter than %s", age, MinStreamMaxAge)
	case age < time.Duration(c.NATS.DuplicateWindow):
		bad("nats.max_age", "%s is shorter than nats.duplicate_window (%s)", age, time.Duration(c.NATS.DuplicateWindow))
	case shortest > 0 && age > shortest:
		bad("nats.max_age", "%s is longer than %s (%s): the streams would keep events past their retention; lower nats.max_age", age, field, shortest)
	}
	o := c.Organization
	party := func(field string, p Party) {
		if p.IsZero() {
			return
		}
		if p.Name == "" {
			bad(field+".name", "is required when %s is given", field)
		}
		if p.Contact == "" && p.Address == "" && p.Phone == "" {
			bad(field+".contact", "give a contact, address or phone for %s", field)
		}
	}
	party("organization.representative", o.Representative)
	party("organization.dpo", o.DPO)
	for i, j := range o.JointControllers {
		f := fmt.Sprintf("organization.joint_controllers[%d]", i)
		if j.IsZero() {
			bad(f, "is empty")
			continue
		}
		party(f, j)
	}
	return errs
}

// OrganizationProblem says what the register of processing lacks to name
// the controller (Art. 30(1)(a)): its name and a contact; "" when nothing.
// A production start refuses when it is not "".
func (c *Config) OrganizationProblem() string {
	var miss []string
	if c.Organization.Name == "" {
		miss = append(miss, "organization.name")
	}
	if c.Organization.Contact == "" {
		miss = append(miss, "organization.contact")
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("%s missing: the register of processing (Art. 30(1)(a)) must name the controller and how to reach it", strings.Join(miss, " and "))
}
