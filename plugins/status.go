package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Status is one plugin as shown by GET /admin/v1/plugins.
type Status struct {
	Name        string    `json:"name"`
	Builtin     bool      `json:"builtin"`
	State       State     `json:"state"`
	Since       time.Time `json:"since"`
	Version     string    `json:"version,omitempty"`
	Description string    `json:"description,omitempty"`
	Manifest    *Manifest `json:"manifest,omitempty"`
	Processed   int64     `json:"processed"`
	Errors      int64     `json:"errors"`
	Restarts    int64     `json:"restarts"`
	LastError   string    `json:"last_error,omitempty"`
	// EnrichPassThrough: the enricher said its configuration leaves it
	// nothing to add (GeoIP without a database), so it is not called.
	EnrichPassThrough bool `json:"enrich_pass_through,omitempty"`
	// Lag is the number of messages its consumers have not acknowledged
	// (pending plus in flight).
	Lag         uint64           `json:"consumer_lag"`
	Consumers   []ConsumerStatus `json:"consumers,omitempty"`
	DeadLetters int              `json:"dead_letters"`
	// RecentDead are the oldest dead letters (up to 20).
	RecentDead []DeadLetter `json:"recent_dead_letters,omitempty"`
}

// Manifest is the JSON form of a plugin's manifest.
type Manifest struct {
	Kinds        []string `json:"kinds"`
	Sites        []string `json:"sites,omitempty"`
	Types        []string `json:"types,omitempty"`
	Names        []string `json:"names,omitempty"`
	Purposes     []string `json:"purposes"`
	Capabilities []string `json:"capabilities"`
	ConfigSchema any      `json:"config_schema,omitempty"`
	Protocol     int      `json:"protocol_version"`
}

// ConsumerStatus is one durable consumer.
type ConsumerStatus struct {
	Name       string `json:"name"`
	Stream     string `json:"stream"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
}

// DeadLetter is one dead-lettered message (its content is not shown).
type DeadLetter struct {
	Sequence uint64 `json:"seq"`
	// EventID is the id of the event (or of the event behind a segment
	// change).
	EventID    string `json:"event_id,omitempty"`
	Subject    string `json:"subject"`
	Consumer   string `json:"consumer"`
	Error      string `json:"error"`
	Deliveries int    `json:"deliveries"`
	FailedAt   string `json:"failed_at"`
}

// Status reports every configured plugin, in configuration order.
func (rt *Runtime) Status(ctx context.Context) []Status {
	out := make([]Status, 0, len(rt.order))
	// The enrich stage's consumers are shown with every enricher: read once.
	enrichCS, enrichLag, _ := rt.consumerStatus(ctx, "")
	for _, p := range rt.order {
		st, m, lastErr, since := p.snapshot()
		s := Status{
			Name: p.spec.Name, Builtin: p.spec.Path == "", State: st, Since: since,
			Version: m.Version, Description: m.Description,
			Processed: p.processed.Load(), Errors: p.errors.Load(), Restarts: p.restarts.Load(),
			LastError: lastErr, EnrichPassThrough: p.enrichIdle(),
		}
		if m.Name != "" {
			s.Manifest = manifestJSON(m)
		}
		s.Consumers, s.Lag, _ = rt.consumerStatus(ctx, p.spec.Name)
		if rt.isEnricher(p) {
			s.Consumers, s.Lag = append(s.Consumers, enrichCS...), s.Lag+enrichLag
		}
		if dl, n, err := rt.DeadLetters(ctx, p.spec.Name, 20); err == nil {
			s.RecentDead, s.DeadLetters = dl, n
		}
		out = append(out, s)
	}
	return out
}

// isEnricher reports whether p is in the enricher chain.
func (rt *Runtime) isEnricher(p *proc) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, e := range rt.enrichers {
		if e == p {
			return true
		}
	}
	return false
}

// manifestJSON converts a manifest for display.
func manifestJSON(m sdk.Manifest) *Manifest {
	j := &Manifest{
		Sites: m.Filter.Sites, Types: m.Filter.Types, Names: m.Filter.Names,
		Purposes: m.Purposes, Capabilities: []string{}, Protocol: m.ProtocolVersion, Kinds: []string{},
	}
	if j.Purposes == nil {
		j.Purposes = []string{}
	}
	for _, k := range m.Kinds {
		j.Kinds = append(j.Kinds, string(k))
	}
	for _, c := range m.Capabilities {
		j.Capabilities = append(j.Capabilities, string(c))
	}
	if len(m.ConfigSchema) > 0 {
		j.ConfigSchema = rawJSON(m.ConfigSchema)
	}
	return j
}

// consumerStatus reports the consumers of one plugin ("" is the enrich
// stage) and their total lag; missing is the error of the first consumer
// that does not exist (any more).
func (rt *Runtime) consumerStatus(ctx context.Context, plugin string) (_ []ConsumerStatus, _ uint64, missing error) {
	if !rt.connected() {
		return nil, 0, nil // not waiting for NATS: unknown while it is down
	}
	rt.mu.Lock()
	cs := append([]*consumer(nil), rt.consumers[plugin]...)
	rt.mu.Unlock()
	var out []ConsumerStatus
	var lag uint64
	for _, c := range cs {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := c.current().Info(ictx)
		cancel()
		if err != nil {
			if missing == nil && streams.IsMissing(err) {
				missing = err
			}
			continue
		}
		out = append(out, ConsumerStatus{Name: c.durable, Stream: c.stream, Pending: info.NumPending, AckPending: info.NumAckPending})
		lag += info.NumPending + uint64(info.NumAckPending)
	}
	return out, lag, missing
}

// refreshLag updates the lag gauges. It is also how a consumer that NATS
// lost is noticed when nothing else says so: a pull request to a consumer
// that no longer exists gets no answer at all from a nats-server with a
// system account (the JetStream API import swallows it), so fetches just
// come back empty; the consumer's info says it is missing.
func (rt *Runtime) refreshLag(ctx context.Context) {
	_, enrichLag, missing := rt.consumerStatus(ctx, "")
	for _, p := range rt.order {
		_, lag, m := rt.consumerStatus(ctx, p.spec.Name)
		if rt.isEnricher(p) {
			lag += enrichLag
		}
		if missing == nil {
			missing = m
		}
		rt.metrics.lag.WithLabelValues(p.spec.Name).Set(float64(lag))
	}
	rt.recover(ctx, missing)
}

// DeadLetters returns up to limit of plugin's dead letters (oldest first)
// and how many there are.
func (rt *Runtime) DeadLetters(ctx context.Context, plugin string, limit int) ([]DeadLetter, int, error) {
	if rt.procs[plugin] == nil {
		return nil, 0, fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	msgs, total, err := rt.readDead(ctx, plugin, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, deadLetterOf(m))
	}
	return out, total, nil
}

// deadLetterOf describes a dead-letter message.
func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	n, _ := strconv.Atoi(m.Header.Get(hdrDeliver))
	var id string
	if subj := m.Header.Get(hdrSubject); strings.HasPrefix(subj, streams.SegmentsPrefix) {
		var c vigiev1.SegmentChange
		if proto.Unmarshal(m.Data, &c) == nil {
			id = c.GetEventId()
		}
	} else {
		var ev vigiev1.Event
		if proto.Unmarshal(m.Data, &ev) == nil {
			id = ev.GetId()
		}
	}
	return DeadLetter{
		Sequence: m.Sequence, EventID: id, Subject: m.Header.Get(hdrSubject), Consumer: m.Header.Get(hdrConsumer),
		Error: m.Header.Get(hdrError), Deliveries: n, FailedAt: m.Header.Get(hdrFailedAt),
	}
}

// readDead reads up to limit dead letters of plugin (limit < 0: all) and
// returns them with the total count.
func (rt *Runtime) readDead(ctx context.Context, plugin string, limit int) ([]*jetstream.RawStreamMsg, int, error) {
	if !rt.connected() {
		return nil, 0, ErrBusDown
	}
	st, err := rt.cfg.JetStream.Stream(ctx, streams.Dead)
	if err != nil {
		return nil, 0, err
	}
	subj := streams.DeadSubject(plugin)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, 0, err
	}
	total := int(info.State.Subjects[subj])
	var out []*jetstream.RawStreamMsg
	seq := uint64(0)
	for len(out) < total && (limit < 0 || len(out) < limit) {
		m, err := st.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, total, err
		}
		out = append(out, m)
		seq = m.Sequence
	}
	return out, total, nil
}

// Replay re-queues every dead letter of plugin to the consumer it failed
// on (and only to it), removes it from the dead-letter stream and returns
// how many were re-queued. Each gets Config.MaxDeliver new attempts.
func (rt *Runtime) Replay(ctx context.Context, plugin string) (int, error) {
	if rt.procs[plugin] == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	msgs, _, err := rt.readDead(ctx, plugin, -1)
	if err != nil {
		return 0, err
	}
	st, err := rt.cfg.JetStream.Stream(ctx, streams.Dead)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range msgs {
		out := nats.NewMsg(streams.ReplaySubject(m.Header.Get(hdrConsumer)))
		out.Data = m.Data
		out.Header.Set(hdrSubject, m.Header.Get(hdrSubject))
		out.Header.Set(nats.MsgIdHdr, "replay:"+strconv.FormatUint(m.Sequence, 10))
		if _, err := rt.cfg.JetStream.PublishMsg(ctx, out); err != nil {
			return n, fmt.Errorf("plugins: replay: %w", err)
		}
		if err := st.DeleteMsg(ctx, m.Sequence); err != nil {
			return n, fmt.Errorf("plugins: replay: %w", err)
		}
		n++
	}
	if n > 0 {
		rt.log.Info("dead letters replayed", "plugin", plugin, "count", n)
	}
	return n, nil
}

// Discard deletes every dead letter of plugin and returns how many there
// were. An erasure among them was already reported failed to its privacy
// request.
func (rt *Runtime) Discard(ctx context.Context, plugin string) (int, error) {
	if rt.procs[plugin] == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	if !rt.connected() {
		return 0, ErrBusDown
	}
	st, err := rt.cfg.JetStream.Stream(ctx, streams.Dead)
	if err != nil {
		return 0, fmt.Errorf("plugins: discard: %w", err)
	}
	subj := streams.DeadSubject(plugin)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("plugins: discard: %w", err)
	}
	n := int(info.State.Subjects[subj])
	if n == 0 {
		return 0, nil
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		return 0, fmt.Errorf("plugins: discard: %w", err)
	}
	rt.log.Info("dead letters discarded", "plugin", plugin, "count", n)
	return n, nil
}

// rawJSON shows JSON bytes as JSON (or as a string when invalid).
type rawJSON []byte

// MarshalJSON implements json.Marshaler.
func (r rawJSON) MarshalJSON() ([]byte, error) {
	if json.Valid(r) {
		return r, nil
	}
	return json.Marshal(string(r))
}
