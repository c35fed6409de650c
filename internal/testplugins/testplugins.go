// Package testplugins holds plugins used by the runtime's end-to-end tests.
// They are registered as built-ins by the tests' TestMain, so the test
// binary re-executes itself to run them, exactly as vigie does.
package testplugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
)

// Flaky is a segmenter that records every event it handles in its key-value
// store ("done/<id>" = the event's purposes) and misbehaves on purpose:
//
//   - an event whose property n is a multiple of 3 makes it panic: always
//     when n is odd, only on the first try when n is even;
//   - an event named "Hang" makes it hang on the first try;
//   - an event named "Emit" makes it call Emit, which it has not declared:
//     the refusal is recorded as "refused/<id>".
//
// It declares purpose analytics; an event without it is recorded as
// "violation/<id>" (the host must never send one).
func Flaky() sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name: "flaky", Version: "1.0.0", Description: "Test segmenter that panics and hangs.",
			Purposes:     []string{"analytics"},
			Capabilities: []sdk.Capability{sdk.CapKV},
		},
		Segmenter: flaky{},
	}
}

type flaky struct{}

// firstTry reports whether this is the first time key is seen, remembering it.
func firstTry(ctx context.Context, h sdk.Host, key string) bool {
	if _, err := h.KVGet(ctx, key); err == nil {
		return false
	}
	_ = h.KVPut(ctx, key, []byte("1"), 0)
	return true
}

// Segment implements sdk.Segmenter.
func (flaky) Segment(ctx context.Context, ev *sdk.Event, _ *sdk.Profile) (*sdk.SegmentResult, error) {
	h := sdk.HostFrom(ctx)
	if !contains(ev.GetPurposes(), "analytics") {
		_ = h.KVPut(ctx, "violation/"+ev.GetId(), []byte(strings.Join(ev.GetPurposes(), ",")), 0)
	}
	var props struct {
		N int `json:"n"`
	}
	_ = json.Unmarshal(ev.GetProperties(), &props)
	if props.N > 0 && props.N%3 == 0 && (props.N%2 == 1 || firstTry(ctx, h, "tried/"+ev.GetId())) {
		panic("flaky: poison event")
	}
	switch ev.GetName() {
	case "Hang":
		if firstTry(ctx, h, "hung/"+ev.GetId()) {
			time.Sleep(time.Minute)
		}
	case "Emit":
		err := h.Emit(ctx, ev)
		msg := "allowed"
		if errors.Is(err, sdk.ErrCapability) {
			msg = "refused: " + err.Error()
		}
		_ = h.KVPut(ctx, "refused/"+ev.GetId(), []byte(msg), 0)
	}
	if err := h.KVPut(ctx, "done/"+ev.GetId(), []byte(strings.Join(ev.GetPurposes(), ",")), 0); err != nil {
		return nil, err
	}
	return &sdk.SegmentResult{}, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Recorder is an enricher, segmenter and syncer that appends everything it
// is given (events, profiles, sync items), as protobuf text, each entry
// starting with its kind (enrich, segment, sync) at the start of a line, to
// the file named by its configuration {"file": "..."}:
// privacy tests search that file for personal data, i.e. they search the
// plugins' input. Its Forget hook rewrites the file without the entries
// naming an erased subject; while the file named by "hold_forget" exists,
// Forget fails instead (so that a test can hold an erasure's plugin step).
// Each Enrich call also appends "enrich-call <events>". With
// "enrich_delay" (a Go duration) each Enrich call waits that long
// after recording its input (a slow plugin). With "refuse_privacy": true,
// Sync fails every privacy item without recording it (so that a test can
// have another node's instance handle it); with "refuse_sync": true it
// fails every sync item so. With "pass_through": true it
// answers Configure that its Enrich changes nothing (sdk.PassThrougher).
func Recorder() sdk.Plugin {
	r := &recorder{}
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name: "recorder", Version: "1.0.0", Description: "Test plugin recording its input.",
		},
		Configurer: r, Enricher: r, Segmenter: r, Syncer: r, Forgetter: r,
	}
}

type recorder struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	hold   string
	delay  time.Duration
	refuse bool
	noSync bool
	pass   bool
}

// PassThrough implements sdk.PassThrougher.
func (r *recorder) PassThrough() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pass
}

// Forget implements sdk.Forgetter.
func (r *recorder) Forget(_ context.Context, evs []*sdk.PrivacyEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold != "" {
		if _, err := os.Stat(r.hold); err == nil {
			return errors.New("recorder: forgetting is held")
		}
	}
	if r.path == "" {
		return nil
	}
	b, err := os.ReadFile(r.path)
	if err != nil {
		return err
	}
	// Entries start with their kind at the beginning of a line.
	var entries []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if len(entries) == 0 || strings.HasPrefix(line, "enrich ") || strings.HasPrefix(line, "segment ") || strings.HasPrefix(line, "sync ") {
			entries = append(entries, "")
		}
		entries[len(entries)-1] += line
	}
	var keep []string
	for _, e := range entries {
		named := false
		for _, ev := range evs {
			for _, s := range append([]string{ev.GetSubject()}, ev.GetSubjects()...) {
				named = named || (s != "" && strings.Contains(e, s))
			}
		}
		if !named {
			keep = append(keep, e)
		}
	}
	return os.WriteFile(r.path, []byte(strings.Join(keep, "")), 0o600)
}

// Configure implements sdk.Configurer.
func (r *recorder) Configure(_ context.Context, raw []byte) error {
	var cfg struct {
		File   string `json:"file"`
		Hold   string `json:"hold_forget"`
		Delay  string `json:"enrich_delay"`
		Refuse bool   `json:"refuse_privacy"`
		NoSync bool   `json:"refuse_sync"`
		Pass   bool   `json:"pass_through"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.File == "" {
		return fmt.Errorf("recorder: config needs a file: %v", err)
	}
	var delay time.Duration
	if cfg.Delay != "" {
		d, err := time.ParseDuration(cfg.Delay)
		if err != nil {
			return fmt.Errorf("recorder: enrich_delay: %w", err)
		}
		delay = d
	}
	f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.f, r.path, r.hold, r.delay, r.refuse, r.noSync, r.pass = f, cfg.File, cfg.Hold, delay, cfg.Refuse, cfg.NoSync, cfg.Pass
	r.mu.Unlock()
	return nil
}

// record appends messages to the file.
func (r *recorder) record(kind string, msgs ...proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		if m == nil || r.f == nil {
			continue
		}
		fmt.Fprintf(r.f, "%s %s\n", kind, prototext.Format(m))
	}
}

// Enrich implements sdk.Enricher.
func (r *recorder) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	for _, ev := range events {
		r.record("enrich", ev)
	}
	r.mu.Lock()
	if r.f != nil {
		fmt.Fprintf(r.f, "enrich-call %d\n", len(events))
	}
	delay := r.delay
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
	return events, nil
}

// Segment implements sdk.Segmenter.
func (r *recorder) Segment(_ context.Context, ev *sdk.Event, p *sdk.Profile) (*sdk.SegmentResult, error) {
	r.record("segment", ev, p)
	return &sdk.SegmentResult{}, nil
}

// Sync implements sdk.Syncer.
func (r *recorder) Sync(_ context.Context, item *sdk.SyncItem) error {
	r.mu.Lock()
	refuse, noSync := r.refuse, r.noSync
	r.mu.Unlock()
	if noSync {
		return errors.New("recorder: sync items refused (refuse_sync)")
	}
	if refuse && item.GetPrivacy() != nil {
		return errors.New("recorder: privacy items refused (refuse_privacy)")
	}
	r.record("sync", item)
	return nil
}

// CRM is a syncer like a CRM connector: it declares purpose marketing and
// capability contacts.resolve, and records the items (with the contact the
// host attached) in the file named by its configuration {"file": "..."}
// ("refuse_privacy" and "refuse_sync" as for Recorder).
func CRM() sdk.Plugin {
	r := &recorder{}
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name: "crm", Version: "1.0.0", Description: "Test CRM syncer recording its input.",
			Purposes:     []string{"marketing"},
			Capabilities: []sdk.Capability{sdk.CapContactsResolve},
		},
		Configurer: r, Syncer: r,
	}
}

// Noop is an enricher and segmenter that does nothing: Enrich returns its
// input unchanged and Segment an empty result. Benchmarks use it to measure
// what the runtime itself costs per event (consumers, process boundary,
// gRPC over mutual TLS, republishing), without a plugin's own work.
func Noop() sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name: "noop", Version: "1.0.0", Description: "Test plugin that returns its input unchanged.",
		},
		Enricher: noop{}, Segmenter: noop{},
	}
}

type noop struct{}

// Enrich implements sdk.Enricher.
func (noop) Enrich(_ context.Context, events []*sdk.Event) ([]*sdk.Event, error) { return events, nil }

// Segment implements sdk.Segmenter.
func (noop) Segment(context.Context, *sdk.Event, *sdk.Profile) (*sdk.SegmentResult, error) {
	return &sdk.SegmentResult{}, nil
}
