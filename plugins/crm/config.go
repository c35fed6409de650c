package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/brevo"
	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot"
	"github.com/vigie-dev/vigie/plugins/crm/webhook"
)

// Connectors.
const (
	ConnectorWebhook = "webhook"
	ConnectorHubSpot = "hubspot"
	ConnectorBrevo   = "brevo"
	// ConnectorNoop delivers nothing and reports every change done: a
	// dry run, and the benchmarks' baseline.
	ConnectorNoop = "noop"
)

// Defaults of Config.
const (
	// DefaultPurpose is a destination's purpose when it lists none.
	DefaultPurpose = "marketing"
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait between
	// deliveries while a destination is unavailable.
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultRetryFor is how long a change is retried while its
	// destination is unavailable before it is dead-lettered.
	DefaultRetryFor = 24 * time.Hour
)

// Config is one destination: the configuration section of one plugin
// entry running the built-in crm (`builtin: crm`). Each destination is its
// own plugin instance, so it has its own process, consumers, dead letters,
// metrics and privacy-request step (`plugin:<name>`).
type Config struct {
	// Connector is webhook, hubspot, brevo (or noop, which delivers
	// nothing). Required.
	Connector string `json:"connector"`
	// Purposes the destination needs: contacts are sent only for subjects
	// whose current consent grants all of them. Default [marketing].
	Purposes []string `json:"purposes,omitempty"`
	// Segments are the segments synced (entries, exits, the membership in
	// upserts); changes of other segments are ignored. Default: every
	// segment.
	Segments []string `json:"segments,omitempty"`
	// Fields maps destination property names to their source:
	// trait.<name> (a vaulted trait), profile.country, profile.campaign,
	// profile.first_seen, profile.last_seen, score or segments. The e-mail
	// address is always sent as the contact's identifier; nothing else is
	// sent unless mapped here. Default none.
	Fields map[string]string `json:"fields,omitempty"`
	// RateLimit is the destination's request rate. Default: the
	// connector's (HubSpot 9/s, Brevo 9/s, webhook 50/s).
	RateLimit delivery.RateLimit `json:"rate_limit,omitzero"`
	// AllowPrivate lets requests reach loopback, private, unique-local and
	// shared addresses (an internal endpoint, tests). Default false.
	AllowPrivate bool `json:"allow_private,omitempty"`
	// Timeout bounds one request (default 20s), ConnectTimeout one
	// connection (default 5s).
	Timeout        delivery.Duration `json:"timeout,omitzero"`
	ConnectTimeout delivery.Duration `json:"connect_timeout,omitzero"`
	// Backoff bounds the wait between deliveries while the destination is
	// unavailable (exponential with jitter, Retry-After honoured).
	// Default 1s to 5m.
	Backoff Backoff `json:"backoff,omitzero"`
	// RetryFor is how long a change is retried while the destination is
	// unavailable; past it the change is dead-lettered. Default 24h.
	RetryFor delivery.Duration `json:"retry_for,omitzero"`
	// Location is where the destination keeps the data, for the register
	// of processing: EU, US or an ISO 3166 country code. Default: EU for
	// Brevo, US for HubSpot (set EU for an account in HubSpot's EU data
	// centre), unknown for a webhook.
	Location string `json:"location,omitempty"`
	// Webhook, HubSpot and Brevo are the connector's own configuration
	// (webhook.Config, hubspot.Config, brevo.Config: url and secrets;
	// token, time_zone…; api_key, folder…); only the chosen connector's.
	Webhook json.RawMessage `json:"webhook,omitempty"`
	HubSpot json.RawMessage `json:"hubspot,omitempty"`
	Brevo   json.RawMessage `json:"brevo,omitempty"`
}

// Backoff bounds the wait between deliveries while a destination is
// unavailable.
type Backoff struct {
	Min delivery.Duration `json:"min,omitzero"`
	Max delivery.Duration `json:"max,omitzero"`
}

// propertyName is what a destination property may be called.
var propertyName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,99}$`)

// profileFields are the profile.<field> sources.
var profileFields = []string{"country", "campaign", "first_seen", "last_seen"}

// Parse decodes and validates a destination's configuration without
// reading its secrets or resolving its host (the plugin does both when it
// starts). Errors name the field (fields.company, hubspot.token…), never a
// secret, and wrap ErrConfig.
func Parse(raw []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return c, fmt.Errorf("%w: connector: required (webhook, hubspot or brevo)", ErrConfig)
	}
	if err := checkDurations(raw); err != nil {
		return c, err
	}
	if err := decodeStrict(raw, &c, ""); err != nil {
		return c, err
	}
	if len(c.Purposes) == 0 {
		c.Purposes = []string{DefaultPurpose}
	}
	for i, p := range c.Purposes {
		if p == "" {
			return c, fmt.Errorf("%w: purposes[%d]: empty", ErrConfig, i)
		}
	}
	for i, s := range c.Segments {
		if s == "" {
			return c, fmt.Errorf("%w: segments[%d]: empty", ErrConfig, i)
		}
	}
	for _, k := range sortedKeys(c.Fields) {
		if !propertyName.MatchString(k) {
			return c, fmt.Errorf("%w: fields.%s: a property name is a letter then up to 99 letters, digits, _ or -", ErrConfig, k)
		}
		if err := checkSource(c.Fields[k]); err != nil {
			return c, fmt.Errorf("%w: fields.%s: %w", ErrConfig, k, err)
		}
	}
	if c.RateLimit.PerSecond < 0 || c.RateLimit.Burst < 0 {
		return c, fmt.Errorf("%w: rate_limit: must not be negative", ErrConfig)
	}
	if c.Backoff.Min <= 0 {
		c.Backoff.Min = delivery.Duration(DefaultMinBackoff)
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = delivery.Duration(DefaultMaxBackoff)
	}
	if c.Backoff.Max < c.Backoff.Min {
		return c, fmt.Errorf("%w: backoff.max: shorter than backoff.min", ErrConfig)
	}
	if c.RetryFor <= 0 {
		c.RetryFor = delivery.Duration(DefaultRetryFor)
	}
	blocks := map[string]json.RawMessage{ConnectorWebhook: c.Webhook, ConnectorHubSpot: c.HubSpot, ConnectorBrevo: c.Brevo}
	if _, ok := blocks[c.Connector]; !ok && c.Connector != ConnectorNoop {
		return c, fmt.Errorf("%w: connector: %q is not one of webhook, hubspot, brevo", ErrConfig, c.Connector)
	}
	for name, b := range blocks {
		if name != c.Connector && len(b) > 0 {
			return c, fmt.Errorf("%w: %s: set for connector %s", ErrConfig, name, c.Connector)
		}
	}
	if c.Connector == ConnectorNoop {
		return c, nil
	}
	if len(blocks[c.Connector]) == 0 {
		return c, fmt.Errorf("%w: %s: required with connector %s", ErrConfig, c.Connector, c.Connector)
	}
	if c.Location == "" {
		c.Location = map[string]string{ConnectorBrevo: "EU", ConnectorHubSpot: "US"}[c.Connector]
	}
	if c.Location != "" && !validLocation(c.Location) {
		return c, fmt.Errorf("%w: location: %q is not EU, US or an ISO 3166 country code", ErrConfig, c.Location)
	}
	// The connector's block, checked as far as it can be without its
	// secrets.
	_, err := c.connectorConfig(Options{}, false)
	return c, err
}

// durationFields are the duration settings, checked before decoding so
// that an error names them (encoding/json does not say which field a
// value's own decoding refused).
var durationFields = [][]string{{"timeout"}, {"connect_timeout"}, {"retry_for"}, {"backoff", "min"}, {"backoff", "max"}}

// checkDurations refuses a duration setting that is not a Go duration.
func checkDurations(raw []byte) error {
	var top map[string]any
	if json.Unmarshal(raw, &top) != nil {
		return nil // decodeStrict says why
	}
	for _, path := range durationFields {
		var v any = top
		for _, k := range path {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if v == nil {
			continue
		}
		str, ok := v.(string)
		if d, err := time.ParseDuration(str); !ok || err != nil || d < 0 {
			return fmt.Errorf("%w: %s: a duration such as \"20s\" or \"5m\"", ErrConfig, strings.Join(path, "."))
		}
	}
	return nil
}

// checkSource validates a field mapping's source.
func checkSource(src string) error {
	switch {
	case src == "score", src == "segments":
		return nil
	case strings.HasPrefix(src, "trait."):
		if !propertyName.MatchString(strings.TrimPrefix(src, "trait.")) {
			return fmt.Errorf("%q: the trait's name is a letter then letters, digits, _ or -", src)
		}
		return nil
	case strings.HasPrefix(src, "profile."):
		if !slices.Contains(profileFields, strings.TrimPrefix(src, "profile.")) {
			return fmt.Errorf("%q: profile fields are %s", src, strings.Join(profileFields, ", "))
		}
		return nil
	}
	return fmt.Errorf("%q is not trait.<name>, profile.<field>, score or segments", src)
}

// validLocation reports EU, US or an upper-case two-letter code.
func validLocation(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// Options are what the plugin process adds to a Config: where to log, and
// (tests) a resolver.
type Options struct {
	// Logger receives the connector's warnings. Default slog.Default().
	Logger *slog.Logger
	// Resolver resolves host names. Default net.DefaultResolver.
	Resolver *net.Resolver
	// Retry is the connector's in-call retry policy. Default: delivery's.
	Retry delivery.Policy
}

// settings are the shared delivery settings of c.
func (c Config) settings(o Options) delivery.Settings {
	return delivery.Settings{
		RateLimit: c.RateLimit, AllowPrivate: c.AllowPrivate, Timeout: c.Timeout, ConnectTimeout: c.ConnectTimeout,
		Retry: o.Retry, Resolver: o.Resolver, Logger: o.Logger,
	}
}

// Connect reads the destination's secrets, checks its address and returns
// its connector.
func (c Config) Connect(ctx context.Context, o Options) (delivery.Connector, error) {
	if c.Connector == ConnectorNoop {
		return &delivery.Noop{}, nil
	}
	cc, err := c.connectorConfig(o, true)
	if err != nil {
		return nil, err
	}
	var u string
	var conn delivery.Connector
	switch cfg := cc.(type) {
	case webhook.Config:
		u = cfg.URL
		conn, err = webhook.New(cfg)
	case hubspot.Config:
		u = cmpOr(cfg.BaseURL, hubspot.DefaultBaseURL)
		conn, err = hubspot.New(cfg)
	case brevo.Config:
		u = cmpOr(cfg.BaseURL, brevo.DefaultBaseURL)
		conn, err = brevo.New(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, c.Connector, err)
	}
	parsed, err := delivery.ParseURL(u, c.AllowPrivate)
	if err == nil {
		err = delivery.CheckURL(ctx, parsed, c.AllowPrivate, o.Resolver)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: %s.%s: %w", ErrConfig, c.Connector, urlField(c.Connector), err)
	}
	return conn, nil
}

// urlField is the name of a connector's URL field.
func urlField(connector string) string {
	if connector == ConnectorWebhook {
		return "url"
	}
	return "base_url"
}

// connectorConfig decodes the chosen connector's block into its Config,
// with the shared settings and segments. Without full, it also checks what
// can be checked without secrets: the URL (a literal address refused by
// the SSRF policy included) and that secrets are named.
func (c Config) connectorConfig(o Options, full bool) (any, error) {
	set := c.settings(o)
	var cfg any
	var urlv string
	var secrets []delivery.SecretSource
	var secretField string
	var err error
	switch c.Connector {
	case ConnectorWebhook:
		var w webhook.Config
		err = decodeBlock(c.Webhook, &w, &w.Settings, "webhook")
		w.Settings = set
		cfg, urlv, secrets, secretField = w, w.URL, w.Secrets, "secrets"
		if err == nil && w.URL == "" {
			err = fmt.Errorf("%w: webhook.url: required", ErrConfig)
		}
		if err == nil && len(w.Secrets) == 0 {
			err = fmt.Errorf("%w: webhook.secrets: at least one ({env: NAME} or {file: PATH})", ErrConfig)
		}
	case ConnectorHubSpot:
		var h hubspot.Config
		err = decodeBlock(c.HubSpot, &h, &h.Settings, "hubspot")
		h.Settings, h.Segments = set, c.Segments
		cfg, urlv, secrets, secretField = h, cmpOr(h.BaseURL, hubspot.DefaultBaseURL), []delivery.SecretSource{h.Token}, "token"
		if err == nil && h.Segments != nil && len(h.Segments) == 0 {
			h.Segments = nil
		}
	case ConnectorBrevo:
		var b brevo.Config
		err = decodeBlock(c.Brevo, &b, &b.Settings, "brevo")
		b.Settings, b.Segments = set, c.Segments
		cfg, urlv, secrets, secretField = b, cmpOr(b.BaseURL, brevo.DefaultBaseURL), []delivery.SecretSource{b.APIKey}, "api_key"
	}
	if err != nil || full {
		return cfg, err
	}
	field := c.Connector + "." + urlField(c.Connector)
	u, err := delivery.ParseURL(urlv, c.AllowPrivate)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, field, errors.Unwrap(err))
	}
	if a, perr := netip.ParseAddr(u.Hostname()); perr == nil {
		if err := delivery.CheckAddress(a, c.AllowPrivate); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, field, err)
		}
	}
	for i, s := range secrets {
		f := c.Connector + "." + secretField
		if secretField == "secrets" {
			f = fmt.Sprintf("%s[%d]", f, i)
		}
		switch {
		case s.Env == "" && s.File == "":
			return nil, fmt.Errorf("%w: %s: required, as {env: NAME} or {file: PATH} (never the value itself)", ErrConfig, f)
		case s.Env != "" && s.File != "":
			return nil, fmt.Errorf("%w: %s: env or file, not both", ErrConfig, f)
		}
	}
	return cfg, nil
}

// EnvSecrets are the environment variables c's secrets are read from:
// the plugin entry's env must pass each one on.
func (c Config) EnvSecrets() []string {
	var out []string
	add := func(s delivery.SecretSource) {
		if s.Env != "" && !slices.Contains(out, s.Env) {
			out = append(out, s.Env)
		}
	}
	cc, _ := c.connectorConfig(Options{}, true)
	switch cfg := cc.(type) {
	case webhook.Config:
		for _, s := range cfg.Secrets {
			add(s)
		}
	case hubspot.Config:
		add(cfg.Token)
	case brevo.Config:
		add(cfg.APIKey)
	}
	return out
}

// decodeBlock decodes a connector's block into cfg strictly, and refuses
// the shared settings there (they belong at the destination's level).
func decodeBlock(raw json.RawMessage, cfg any, settings *delivery.Settings, field string) error {
	if err := decodeStrict(raw, cfg, field+"."); err != nil {
		return err
	}
	if *settings != (delivery.Settings{}) {
		return fmt.Errorf("%w: %s: rate_limit, allow_private, timeout and connect_timeout are set at the destination's level, not in %s", ErrConfig, field, field)
	}
	return nil
}

// decodeStrict decodes raw into v, refusing unknown fields; errors name
// the field (with prefix) and never quote a value.
func decodeStrict(raw []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return fmt.Errorf("%w: %s: more than one value", ErrConfig, strings.TrimSuffix(cmpOr(prefix, "config"), "."))
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("%w: %s%s: must be %s", ErrConfig, prefix, te.Field, typeName(te.Type.Kind().String()))
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %s: not valid JSON", ErrConfig, strings.TrimSuffix(cmpOr(prefix, "config"), "."))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%w: %s%s: unknown field", ErrConfig, prefix, strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	case errors.Is(err, delivery.ErrConfig):
		// A duration or a secret that does not parse: its own message
		// names no value but the one it refused.
		return fmt.Errorf("%w: %s%w", ErrConfig, prefix, err)
	}
	return fmt.Errorf("%w: %s: cannot be read", ErrConfig, strings.TrimSuffix(cmpOr(prefix, "config"), "."))
}

// typeName is a Go kind in the configuration's words.
func typeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "slice", "array":
		return "a list"
	case "map", "struct":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a number"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
