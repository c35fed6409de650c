package consent

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Purpose is a processing purpose. Purpose names are lower-case ASCII
// (letters, digits, '_' and '-', starting with a letter, at most 64 bytes).
type Purpose string

// Built-in purposes. They are always registered.
const (
	// Necessary covers processing required to serve the request and keep
	// the service secure. It is always granted and cannot be denied.
	Necessary Purpose = "necessary"
	// Analytics covers audience measurement.
	Analytics Purpose = "analytics"
	// Personalization covers adapting content to the visitor.
	Personalization Purpose = "personalization"
	// Marketing covers advertising and syncing contacts to marketing tools.
	Marketing Purpose = "marketing"
)

// Sensitive is the dedicated purpose a site's require_consent action asks
// for before it keeps an event in which special categories of data (GDPR
// Art. 9) were detected with the visitor's identifiers: the explicit
// consent of Art. 9(2)(a). It is not built in: the configuration registers
// it when a site uses require_consent, it is never a default purpose
// (Policy.Validate refuses it there), never identifying by itself, and it
// is not listed among the purposes a visitor is shown unless the operator
// lists it in the configuration's purposes.
const Sensitive Purpose = "sensitive"

// PurposeInfo describes a configured purpose (used for the register of
// processing activities).
type PurposeInfo struct {
	// Name is the purpose.
	Name Purpose `yaml:"name"`
	// Description explains the purpose to a person.
	Description string `yaml:"description"`
}

// DefaultPurposes returns the four built-in purposes with descriptions.
func DefaultPurposes() []PurposeInfo {
	return []PurposeInfo{
		{Name: Necessary, Description: "Strictly necessary processing to deliver the site and keep it secure; always allowed."},
		{Name: Analytics, Description: "Measuring audience and usage to improve the site."},
		{Name: Personalization, Description: "Remembering preferences and adapting content to the visitor."},
		{Name: Marketing, Description: "Advertising, retargeting and syncing contacts to marketing tools."},
	}
}

// maxPurposes is the capacity of the registry: a Set is a 64-bit bitset.
const maxPurposes = 64

// maxPurposeLen bounds a purpose name.
const maxPurposeLen = 64

// The registry maps bit positions to purposes. It is append-only and read
// lock-free through an immutable snapshot; bit i of a Set is registry[i].
var (
	registryMu sync.Mutex
	registry   atomic.Pointer[[]Purpose]
)

func init() {
	builtin := []Purpose{Necessary, Analytics, Personalization, Marketing}
	registry.Store(&builtin)
}

// necessaryBit is the bit of Necessary (registered first).
const necessaryBit uint64 = 1

// Register adds custom purposes to the process-wide registry so that sets,
// parsers and policies recognise them. Registering an existing purpose is a
// no-op. At most 64 purposes (built-ins included) can exist; on error
// nothing is registered. Call it at start-up, from configuration only —
// never with names taken from requests.
func Register(ps ...Purpose) error {
	for _, p := range ps {
		if !validPurposeName(string(p)) {
			return fmt.Errorf("%w: bad name %q", ErrInvalidPurpose, p)
		}
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	cur := *registry.Load()
	next := slices.Clone(cur)
	for _, p := range ps {
		if !slices.Contains(next, p) {
			next = append(next, p)
		}
	}
	if len(next) > maxPurposes {
		return fmt.Errorf("%w: more than %d purposes", ErrInvalidPurpose, maxPurposes)
	}
	registry.Store(&next)
	return nil
}

func validPurposeName(s string) bool {
	if len(s) == 0 || len(s) > maxPurposeLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// index returns the bit of the purpose named s, or -1. With fold, ASCII
// case is ignored. It does not allocate.
func index(s string, fold bool) int {
	for i, p := range *registry.Load() {
		if string(p) == s || (fold && asciiEqualFold(string(p), s)) {
			return i
		}
	}
	return -1
}

// asciiEqualFold reports whether a and b are equal ignoring ASCII case
// (registered names are ASCII, so Unicode folding would only add surprises).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// allBits returns the set of every registered purpose.
func allBits() uint64 {
	n := len(*registry.Load())
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// explicitOnlyBits are the purposes blanket tokens ("all", "none") leave
// alone: Sensitive, whose consent must name it (Art. 9(2)(a)).
func explicitOnlyBits() uint64 {
	if i := index(string(Sensitive), false); i >= 0 {
		return 1 << i
	}
	return 0
}

// Set is a small immutable set of registered purposes: a bitset over the
// process-wide registry. The zero value is the empty set; sets are
// comparable with ==, and operations on them never allocate (except Names
// and String).
type Set struct {
	bits uint64
}

// NewSet returns the set of the given purposes. Unregistered purposes are
// ignored; use ParseSet for names that come from configuration.
func NewSet(ps ...Purpose) Set {
	var s Set
	for _, p := range ps {
		if i := index(string(p), false); i >= 0 {
			s.bits |= 1 << i
		}
	}
	return s
}

// ParseSet returns the set of the named purposes (ASCII case ignored). An
// unregistered name is an error wrapping ErrUnknownPurpose.
func ParseSet(names ...string) (Set, error) {
	var s Set
	for _, n := range names {
		n = strings.TrimSpace(n)
		i := index(n, true)
		if i < 0 {
			return Set{}, fmt.Errorf("%w: %q", ErrUnknownPurpose, n)
		}
		s.bits |= 1 << i
	}
	return s, nil
}

// Has reports whether p is in the set.
func (s Set) Has(p Purpose) bool {
	i := index(string(p), false)
	return i >= 0 && s.bits&(1<<i) != 0
}

// HasAll reports whether every purpose of o is in s (true for an empty o).
func (s Set) HasAll(o Set) bool { return o.bits&^s.bits == 0 }

// HasAny reports whether s and o share a purpose.
func (s Set) HasAny(o Set) bool { return s.bits&o.bits != 0 }

// Len returns the number of purposes in the set.
func (s Set) Len() int { return bits.OnesCount64(s.bits) }

// Names returns the purpose names in ascending order.
func (s Set) Names() []string {
	if s.bits == 0 {
		return nil
	}
	reg := *registry.Load()
	out := make([]string, 0, s.Len())
	for i, p := range reg {
		if s.bits&(1<<i) != 0 {
			out = append(out, string(p))
		}
	}
	slices.Sort(out)
	return out
}

// String returns the sorted names joined by commas ("" for the empty set).
func (s Set) String() string { return strings.Join(s.Names(), ",") }

// UnmarshalYAML reads a set from a YAML sequence of names or a
// comma-separated string (go.yaml.in/yaml/v3 calls it).
func (s *Set) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err != nil {
		var str string
		if err2 := unmarshal(&str); err2 != nil {
			return fmt.Errorf("%w: purposes must be a list or a comma-separated string", ErrInvalidPolicy)
		}
		list = nil
		if strings.TrimSpace(str) != "" {
			list = strings.Split(str, ",")
		}
	}
	parsed, err := ParseSet(list...)
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// MarshalYAML writes the set as a sequence of names.
func (s Set) MarshalYAML() (any, error) {
	if n := s.Names(); n != nil {
		return n, nil
	}
	return []string{}, nil
}
