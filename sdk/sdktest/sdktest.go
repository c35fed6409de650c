// Package sdktest runs a Vigie plugin in-process against fake host
// services, so that a plugin is tested with go test and no running Vigie.
//
// The plugin is served over a real go-plugin gRPC connection (in memory,
// no child process), so events and profiles cross the same protobuf
// boundary as in production and host callbacks are checked against the
// manifest's capabilities exactly as Vigie does.
//
//	h := sdktest.Start(t, sdktest.Config{Plugin: myPlugin()})
//	h.RunEnrich(t, []sdktest.EnrichCase{{Name: "adds reading time", In: ..., Want: ...}})
package sdktest

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
)

// Config configures a Harness.
type Config struct {
	// Plugin is the plugin under test; required.
	Plugin sdk.Plugin
	// Host is the fake host services. Default: NewHost().
	Host *Host
	// PluginConfig, when set, is passed to the plugin's Configurer as its
	// configuration section (JSON). Default: Configure is not called.
	PluginConfig []byte
}

// Harness is a plugin running in-process. The embedded *sdk.Client calls
// its hooks exactly as Vigie would; Host records its callbacks.
type Harness struct {
	*sdk.Client
	// Host is the fake host services the plugin calls back.
	Host *Host
}

// Start serves cfg.Plugin in-process and connects to it; everything is
// torn down when the test ends. It fails the test if the plugin is invalid
// or refuses its configuration.
func Start(tb testing.TB, cfg Config) *Harness {
	tb.Helper()
	host := cfg.Host
	if host == nil {
		host = NewHost()
	}
	set, err := sdk.PluginSet(cfg.Plugin, host)
	if err != nil {
		tb.Fatalf("sdktest: %v", err)
	}
	rpc, srv := plugin.TestPluginGRPCConn(tb, false, set)
	tb.Cleanup(func() {
		// Stop the server before closing the client: closing first makes
		// go-plugin shut the server down from its own goroutine, racing
		// with Stop.
		srv.Stop()
		_ = rpc.Close()
	})
	c, err := sdk.Dispense(tb.Context(), rpc)
	if err != nil {
		tb.Fatalf("sdktest: %v", err)
	}
	if cfg.PluginConfig != nil {
		if err := c.Configure(tb.Context(), cfg.PluginConfig); err != nil {
			tb.Fatalf("sdktest: configure: %v", err)
		}
	}
	return &Harness{Client: c, Host: host}
}

// EnrichCase is one table entry for RunEnrich.
type EnrichCase struct {
	// Name names the subtest.
	Name string
	// In is the batch given to the plugin.
	In []*sdk.Event
	// Want is the expected output, compared in order with proto.Equal.
	// Nil skips the comparison (use Check).
	Want []*sdk.Event
	// WantErr, when set, must be a substring of the error; the call must
	// succeed otherwise.
	WantErr string
	// Check, when set, runs after the call, e.g. to inspect Host.
	Check func(t *testing.T, out []*sdk.Event, host *Host)
}

// RunEnrich runs each case as a subtest.
func (h *Harness) RunEnrich(t *testing.T, cases []EnrichCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			out, err := h.Enrich(t.Context(), tc.In)
			if !errMatches(t, err, tc.WantErr) {
				return
			}
			if tc.Want != nil {
				if len(out) != len(tc.Want) {
					t.Fatalf("got %d events, want %d", len(out), len(tc.Want))
				}
				for i := range out {
					assertEqual(t, "event "+tc.Want[i].GetId(), out[i], tc.Want[i])
				}
			}
			if tc.Check != nil {
				tc.Check(t, out, h.Host)
			}
		})
	}
}

// SegmentCase is one table entry for RunSegment.
type SegmentCase struct {
	// Name names the subtest.
	Name string
	// Event and Profile are given to the plugin.
	Event   *sdk.Event
	Profile *sdk.Profile
	// Want is the expected result; nil skips the comparison.
	Want *sdk.SegmentResult
	// WantErr, when set, must be a substring of the error.
	WantErr string
	// Check, when set, runs after the call.
	Check func(t *testing.T, res *sdk.SegmentResult, host *Host)
}

// RunSegment runs each case as a subtest.
func (h *Harness) RunSegment(t *testing.T, cases []SegmentCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			res, err := h.Segment(t.Context(), tc.Event, tc.Profile)
			if !errMatches(t, err, tc.WantErr) {
				return
			}
			if tc.Want != nil {
				assertEqual(t, "profile update", res.Update, tc.Want.Update)
				if len(res.Changes) != len(tc.Want.Changes) {
					t.Fatalf("got %d segment changes %v, want %d", len(res.Changes), res.Changes, len(tc.Want.Changes))
				}
				for i := range res.Changes {
					assertEqual(t, "segment change", res.Changes[i], tc.Want.Changes[i])
				}
			}
			if tc.Check != nil {
				tc.Check(t, res, h.Host)
			}
		})
	}
}

// SyncCase is one table entry for RunSync.
type SyncCase struct {
	// Name names the subtest.
	Name string
	// Item is given to the plugin.
	Item *sdk.SyncItem
	// WantErr, when set, must be a substring of the error.
	WantErr string
	// Check, when set, runs after the call.
	Check func(t *testing.T, host *Host)
}

// RunSync runs each case as a subtest.
func (h *Harness) RunSync(t *testing.T, cases []SyncCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			err := h.Sync(t.Context(), tc.Item)
			if !errMatches(t, err, tc.WantErr) {
				return
			}
			if tc.Check != nil {
				tc.Check(t, h.Host)
			}
		})
	}
}

// ForgetCase is one table entry for RunForget.
type ForgetCase struct {
	// Name names the subtest.
	Name string
	// Events are given to the plugin's Forgetter in one batch.
	Events []*sdk.PrivacyEvent
	// WantErr, when set, must be a substring of the error.
	WantErr string
	// Check, when set, runs after the call, e.g. to make sure Host's
	// key-value space holds nothing of the subjects any more.
	Check func(t *testing.T, host *Host)
}

// RunForget runs each case as a subtest.
func (h *Harness) RunForget(t *testing.T, cases []ForgetCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			err := h.Forget(t.Context(), tc.Events)
			if !errMatches(t, err, tc.WantErr) {
				return
			}
			if tc.Check != nil {
				tc.Check(t, h.Host)
			}
		})
	}
}

// errMatches checks err against want and reports whether the case should
// go on with its comparisons (only when no error was expected).
func errMatches(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
	return want == ""
}

// assertEqual compares two messages with proto.Equal.
func assertEqual(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\n got: %s\nwant: %s", what, prototext.Format(got), prototext.Format(want))
	}
}
