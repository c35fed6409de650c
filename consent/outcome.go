package consent

import "fmt"

// Outcome is what happens to an event after the consent decision.
type Outcome uint8

// Outcomes, from least to most identifying. The zero value is not an outcome.
const (
	// Drop discards the event.
	Drop Outcome = iota + 1
	// Anonymous keeps the event without any identifier.
	Anonymous
	// Pseudonymous keeps the event with keyed-hash identifiers.
	Pseudonymous
)

// String returns "drop", "anonymous" or "pseudonymous" (or "outcome(N)").
func (o Outcome) String() string {
	switch o {
	case Drop:
		return "drop"
	case Anonymous:
		return "anonymous"
	case Pseudonymous:
		return "pseudonymous"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// ParseOutcome parses the String form of an outcome (as used in
// configuration). An unknown name is an error wrapping ErrInvalidPolicy.
func ParseOutcome(s string) (Outcome, error) {
	for _, o := range [...]Outcome{Drop, Anonymous, Pseudonymous} {
		if asciiEqualFold(s, o.String()) {
			return o, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown outcome %q", ErrInvalidPolicy, s)
}

// MarshalText implements encoding.TextMarshaler (YAML, JSON).
func (o Outcome) MarshalText() ([]byte, error) {
	if o < Drop || o > Pseudonymous {
		return nil, fmt.Errorf("%w: %s", ErrInvalidPolicy, o)
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler via ParseOutcome.
func (o *Outcome) UnmarshalText(b []byte) error {
	v, err := ParseOutcome(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}
