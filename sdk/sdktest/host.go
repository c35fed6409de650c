package sdktest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
)

// LogEntry is one line a plugin logged through the host.
type LogEntry struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

// Host is an in-memory sdk.Host: profiles and contacts set by the test, a
// key-value store, and recorded emits and logs. Capability checks are done
// by the SDK in front of it, as in Vigie. It is safe for concurrent use.
type Host struct {
	mu       sync.Mutex
	now      func() time.Time
	profiles map[string]*sdk.Profile
	contacts map[string]*sdk.Contact
	kv       map[string]kvEntry
	emitted  []*sdk.Event
	logs     []LogEntry
}

// kvEntry is a stored value and its expiry (zero: none).
type kvEntry struct {
	value   []byte
	expires time.Time
}

// NewHost returns an empty Host.
func NewHost() *Host {
	return &Host{
		now:      time.Now,
		profiles: map[string]*sdk.Profile{},
		contacts: map[string]*sdk.Contact{},
		kv:       map[string]kvEntry{},
	}
}

// subjectKey keys profiles and contacts.
func subjectKey(site, subject string) string { return site + "\x00" + subject }

// SetProfile stores a profile under its Site and Subject.
func (h *Host) SetProfile(p *sdk.Profile) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.profiles[subjectKey(p.GetSite(), p.GetSubject())] = proto.Clone(p).(*sdk.Profile)
}

// SetContact stores the contact details resolved for a subject.
func (h *Host) SetContact(site, subject string, c *sdk.Contact) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.contacts[subjectKey(site, subject)] = proto.Clone(c).(*sdk.Contact)
}

// KV returns a copy of the live key-value entries.
func (h *Host) KV() map[string][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]byte, len(h.kv))
	now := h.now()
	for k, e := range h.kv {
		if e.expires.IsZero() || now.Before(e.expires) {
			out[k] = slices.Clone(e.value)
		}
	}
	return out
}

// Emitted returns the events the plugin emitted, in order.
func (h *Host) Emitted() []*sdk.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.emitted)
}

// Logs returns the lines the plugin logged, in order.
func (h *Host) Logs() []LogEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.logs)
}

// ProfileGet implements sdk.Host.
func (h *Host) ProfileGet(_ context.Context, site, subject string) (*sdk.Profile, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.profiles[subjectKey(site, subject)]
	if !ok {
		return nil, sdk.ErrNotFound
	}
	return proto.Clone(p).(*sdk.Profile), nil
}

// KVGet implements sdk.Host.
func (h *Host) KVGet(_ context.Context, key string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.kv[key]
	if !ok || (!e.expires.IsZero() && !h.now().Before(e.expires)) {
		return nil, sdk.ErrNotFound
	}
	return slices.Clone(e.value), nil
}

// KVPut implements sdk.Host.
func (h *Host) KVPut(_ context.Context, key string, value []byte, ttl time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := kvEntry{value: slices.Clone(value)}
	if ttl > 0 {
		e.expires = h.now().Add(ttl)
	}
	h.kv[key] = e
	return nil
}

// KVDelete implements sdk.Host.
func (h *Host) KVDelete(_ context.Context, key string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.kv, key)
	return nil
}

// ContactResolve implements sdk.Host.
func (h *Host) ContactResolve(_ context.Context, site, subject string) (*sdk.Contact, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.contacts[subjectKey(site, subject)]
	if !ok {
		return nil, sdk.ErrNotFound
	}
	return proto.Clone(c).(*sdk.Contact), nil
}

// Emit implements sdk.Host.
func (h *Host) Emit(_ context.Context, ev *sdk.Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.emitted = append(h.emitted, proto.Clone(ev).(*sdk.Event))
	return nil
}

// Log implements sdk.Host.
func (h *Host) Log(_ context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	e := LogEntry{Level: level, Message: msg, Attrs: make(map[string]string, len(attrs))}
	for _, a := range attrs {
		e.Attrs[a.Key] = a.Value.String()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, e)
}
