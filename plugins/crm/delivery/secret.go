package delivery

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret holds a credential (API key, token, signing secret). It prints,
// logs and marshals as "[redacted]": String, GoString, Format, LogValue,
// MarshalJSON and MarshalText all hide it, and its value sits behind a
// pointer so that even fmt's printing of an enclosing struct's unexported
// fields shows an address, not the value. Only Reveal returns it.
type Secret struct {
	v *string
}

// NewSecret wraps v.
func NewSecret(v string) Secret { return Secret{v: &v} }

// Reveal returns the secret's value, for the one place that sends it.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports an empty secret.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// SecretSource says where a secret is read from: an environment variable
// or a file (for Docker and Kubernetes secrets). Exactly one is set. It
// is the configuration form of a secret; a literal value is not accepted,
// so that vigie.yaml never holds one.
type SecretSource struct {
	// Env is the name of an environment variable.
	Env string `json:"env,omitempty"`
	// File is the path of a file holding the secret; surrounding
	// whitespace (a trailing newline) is trimmed.
	File string `json:"file,omitempty"`
	// Value is a secret set by code (tests, benchmarks); it cannot come
	// from configuration. When set, Env and File are ignored.
	Value Secret `json:"-"`
}

// Load reads the secret. Errors name the variable or the file, never the
// value.
func (s SecretSource) Load() (Secret, error) {
	switch {
	case !s.Value.IsZero():
		return s.Value, nil
	case s.Env != "" && s.File != "":
		return Secret{}, fmt.Errorf("%w: give env or file, not both", ErrSecret)
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || strings.TrimSpace(v) == "" {
			return Secret{}, fmt.Errorf("%w: environment variable %s is not set", ErrSecret, s.Env)
		}
		return NewSecret(strings.TrimSpace(v)), nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return Secret{}, fmt.Errorf("%w: cannot read secret file %s", ErrSecret, s.File)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return Secret{}, fmt.Errorf("%w: secret file %s is empty", ErrSecret, s.File)
		}
		return NewSecret(v), nil
	}
	return Secret{}, fmt.Errorf("%w: no env or file given", ErrSecret)
}
