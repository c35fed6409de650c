package delivery

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Settings are the delivery settings every connector's configuration
// embeds (their JSON fields appear at the connector's top level).
type Settings struct {
	// RateLimit is the destination's request rate. Default: the
	// connector's.
	RateLimit RateLimit `json:"rate_limit,omitzero"`
	// AllowPrivate lets requests reach internal addresses (see
	// HTTPConfig.AllowPrivate). Default false.
	AllowPrivate bool `json:"allow_private,omitempty"`
	// Timeout bounds one request. Default 20s.
	Timeout Duration `json:"timeout,omitzero"`
	// ConnectTimeout bounds one connection. Default 5s.
	ConnectTimeout Duration `json:"connect_timeout,omitzero"`
	// Retry is the in-call retry policy. Default: Policy's defaults.
	Retry Policy `json:"-"`
	// Resolver resolves host names (tests). Default net.DefaultResolver.
	Resolver *net.Resolver `json:"-"`
	// Logger receives warnings (failed requests, pauses) without
	// secrets or e-mail addresses. Default slog.Default().
	Logger *slog.Logger `json:"-"`
}

// HTTPConfig is the client configuration of s.
func (s Settings) HTTPConfig() HTTPConfig {
	return HTTPConfig{
		AllowPrivate:   s.AllowPrivate,
		ConnectTimeout: time.Duration(s.ConnectTimeout),
		Timeout:        time.Duration(s.Timeout),
		Resolver:       s.Resolver,
	}
}

// Log is s.Logger or slog.Default().
func (s Settings) Log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Duration is a time.Duration written as a Go duration string ("20s",
// "1m30s") in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: a duration is a string such as \"20s\"", ErrConfig)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%w: %q is not a duration such as \"20s\"", ErrConfig, s)
	}
	*d = Duration(v)
	return nil
}
