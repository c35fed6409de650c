package model

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Other is the contact type of a subject that matches no configured
// contact type. It is a cell like any other.
const Other = "other"

// Defaults of Config and MessageType, applied by New to zero fields.
const (
	// DefaultWindow is how long after an exposure a response counts.
	DefaultWindow = 7 * 24 * time.Hour
	// DefaultResponses are the response kinds a message type counts.
	DefaultResponses = Open | Click | Conversion
	// DefaultInterval is the mass of the equal-tailed credible interval.
	DefaultInterval = 0.9
	// DefaultMinPriorStrength is the floor on the prior's α+β: every cell
	// borrows at least this many pseudo-exposures from its message type's
	// other cells.
	DefaultMinPriorStrength = 2
	// DefaultMaxPriorStrength caps α+β when the cells of a message type
	// look alike (no measurable spread between them).
	DefaultMaxPriorStrength = 200
	// DefaultMaxPending is how many exposures per subject wait for a
	// response at once; the oldest is dropped first.
	DefaultMaxPending = 16
	// DefaultPruneBelow: a subject's contribution to a cell whose decayed
	// exposure weight falls below this is dropped (and subtracted from the
	// cell). 1e-3 is about 10 half-lives.
	DefaultPruneBelow = 1e-3
	// DefaultShards is the number of shards subjects are spread over for
	// MarshalShard.
	DefaultShards = 1
)

// maxNameLen is the longest contact or message type name.
const maxNameLen = 64

// Kind is a kind of response, or a set of them (bits).
type Kind uint8

// Response kinds.
const (
	// Open is a human e-mail open (never a machine's).
	Open Kind = 1 << iota
	// Click is a click on a link of the message.
	Click
	// Conversion is a configured event (e.g. Order Completed) within the
	// message type's window.
	Conversion
)

// kindNames are the names of the single kinds, in bit order.
var kindNames = [...]string{"open", "click", "conversion"}

// String returns the kind's name, or the names of a set joined by "|".
func (k Kind) String() string {
	var parts []string
	for i, n := range kindNames {
		if k&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "|")
}

// ParseKind returns the kind named s (open, click or conversion).
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if s == n {
			return 1 << i, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown response kind %q (want open, click or conversion)", ErrConfig, s)
}

// Arm says whether an exposure showed the message or held it back.
type Arm uint8

// Arms.
const (
	// Treated exposures showed or sent the message.
	Treated Arm = 0
	// Holdout exposures are subjects picked for the message and held out
	// ("no message"), to measure its uplift.
	Holdout Arm = 1
)

// ContactType is a named combination of segments.
type ContactType struct {
	// Name is 1-64 of [a-z0-9_-], unique, not "other"; required.
	Name string
	// Segments must all hold for a subject to be of this type; at least
	// one; required.
	Segments []string
}

// MessageType is a kind of message and what counts as a response to it.
type MessageType struct {
	// Name is 1-64 of [a-z0-9_-], unique; required.
	Name string
	// Window is how long after an exposure a response counts. Default
	// DefaultWindow (7 days).
	Window time.Duration
	// Responses are the kinds that count as a response (the rate Next
	// optimises). Default DefaultResponses (open, click, conversion).
	Responses Kind
	// Conversions are the event names that count as a conversion of this
	// message type. Default none.
	Conversions []string
}

// Config configures a Model. Zero fields take the documented defaults.
type Config struct {
	// ContactTypes are tried in order; a subject is of the first whose
	// segments it is all in, else Other. Default none (everyone is Other).
	ContactTypes []ContactType
	// MessageTypes are the messages modelled; exposures and responses of
	// other types are ignored. Default none.
	MessageTypes []MessageType
	// HalfLife is the time after which an exposure and its response weigh
	// half as much. Default 0: no decay.
	HalfLife time.Duration
	// Interval is the mass of the credible intervals, in (0, 1). Default
	// DefaultInterval (0.9).
	Interval float64
	// MinPriorStrength and MaxPriorStrength bound the empirical-Bayes
	// prior's α+β. Defaults DefaultMinPriorStrength (2) and
	// DefaultMaxPriorStrength (200).
	MinPriorStrength, MaxPriorStrength float64
	// MaxPending is how many exposures per subject await a response.
	// Default DefaultMaxPending (16).
	MaxPending int
	// PruneBelow is the decayed exposure weight under which a subject's
	// contribution is dropped. Default DefaultPruneBelow (1e-3).
	PruneBelow float64
	// Shards is the number of shards for MarshalShard, at least 1.
	// Default DefaultShards (1).
	Shards int
}

// withDefaults returns c with zero fields set to their defaults, after
// validating it.
func (c Config) withDefaults() (Config, error) {
	out := c
	out.ContactTypes = slices.Clone(c.ContactTypes)
	out.MessageTypes = slices.Clone(c.MessageTypes)
	if out.Interval == 0 {
		out.Interval = DefaultInterval
	}
	if out.MinPriorStrength == 0 {
		out.MinPriorStrength = DefaultMinPriorStrength
	}
	if out.MaxPriorStrength == 0 {
		out.MaxPriorStrength = DefaultMaxPriorStrength
	}
	if out.MaxPending == 0 {
		out.MaxPending = DefaultMaxPending
	}
	if out.PruneBelow == 0 {
		out.PruneBelow = DefaultPruneBelow
	}
	if out.Shards == 0 {
		out.Shards = DefaultShards
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case out.HalfLife < 0:
		return fail("half-life %v is negative", out.HalfLife)
	case !(out.Interval > 0 && out.Interval < 1):
		return fail("interval %v must be in (0, 1)", out.Interval)
	case !(out.MinPriorStrength > 0) || math.IsInf(out.MinPriorStrength, 0):
		return fail("min prior strength %v must be positive", out.MinPriorStrength)
	case !(out.MaxPriorStrength >= out.MinPriorStrength) || math.IsInf(out.MaxPriorStrength, 0):
		return fail("max prior strength %v must be finite and at least the min %v", out.MaxPriorStrength, out.MinPriorStrength)
	case out.MaxPending < 1:
		return fail("max pending %d must be at least 1", out.MaxPending)
	case !(out.PruneBelow > 0 && out.PruneBelow < 1):
		return fail("prune-below %v must be in (0, 1)", out.PruneBelow)
	case out.Shards < 1 || out.Shards > MaxShards:
		return fail("shards %d must be in [1, %d]", out.Shards, MaxShards)
	}
	seen := map[string]bool{Other: true}
	for i, ct := range out.ContactTypes {
		switch {
		case ct.Name == Other:
			return fail("contact type %q is reserved for subjects of no configured type", Other)
		case !validName(ct.Name):
			return fail("contact type %q: name must be 1-%d of [a-z0-9_-]", ct.Name, maxNameLen)
		case seen[ct.Name]:
			return fail("contact type %q: duplicate name", ct.Name)
		case len(ct.Segments) == 0:
			return fail("contact type %q: needs at least one segment", ct.Name)
		}
		seen[ct.Name] = true
		for _, s := range ct.Segments {
			if s == "" {
				return fail("contact type %q: empty segment name", ct.Name)
			}
		}
		out.ContactTypes[i].Segments = slices.Clone(ct.Segments)
	}
	clear(seen)
	for i, mt := range out.MessageTypes {
		switch {
		case !validName(mt.Name):
			return fail("message type %q: name must be 1-%d of [a-z0-9_-]", mt.Name, maxNameLen)
		case seen[mt.Name]:
			return fail("message type %q: duplicate name", mt.Name)
		case mt.Window < 0:
			return fail("message type %q: window %v is negative", mt.Name, mt.Window)
		case mt.Responses&^DefaultResponses != 0:
			return fail("message type %q: unknown response kinds", mt.Name)
		}
		seen[mt.Name] = true
		if mt.Window == 0 {
			out.MessageTypes[i].Window = DefaultWindow
		}
		if mt.Responses == 0 {
			out.MessageTypes[i].Responses = DefaultResponses
		}
		for _, ev := range mt.Conversions {
			if ev == "" {
				return fail("message type %q: empty conversion event name", mt.Name)
			}
		}
		out.MessageTypes[i].Conversions = slices.Clone(mt.Conversions)
	}
	if n := (len(out.ContactTypes) + 1) * len(out.MessageTypes); n > maxCells {
		return fail("%d cells (contact types + 1) × message types is more than %d", n, maxCells)
	}
	return out, nil
}

// maxCells bounds the table (and the cell index of the encoding).
const maxCells = 1 << 16

// MaxShards is the largest shard count.
const MaxShards = 1 << 16

// validName reports whether s is 1-64 of [a-z0-9_-].
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}
