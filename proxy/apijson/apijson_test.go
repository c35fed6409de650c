package apijson

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestAdminJSON: the admin API's rendering of protobuf messages, for the
// segment changes of GET /admin/v1/segments and for events: int64 as
// numbers, enums as lower-case names without their prefix, JSON bytes as
// JSON, maps and nested messages as objects, unset fields left out.
func TestAdminJSON(t *testing.T) {
	for _, c := range []struct {
		name string
		msg  proto.Message
		want string
	}{
		{"segment entry", &vigiev1.SegmentChange{Site: "demo", Segment: "hot-lead", Transition: vigiev1.Transition_TRANSITION_ENTERED, AtMs: 1770091506789},
			`{"at_ms":1770091506789,"segment":"hot-lead","site":"demo","transition":"entered"}`},
		{"segment exit", &vigiev1.SegmentChange{Transition: vigiev1.Transition_TRANSITION_EXITED}, `{"transition":"exited"}`},
		{"privacy action", &vigiev1.PrivacyEvent{Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED}, `{"action":"consent_changed"}`},
		{"unknown enum number", &vigiev1.Event{Mode: vigiev1.Mode(9)}, `{"mode":9}`},
		{"event", &vigiev1.Event{
			Type: "page", Mode: vigiev1.Mode_MODE_ANONYMOUS, TimestampMs: -1, Purposes: []string{"necessary"},
			Properties: []byte(`{"a":[1,2]}`), Traits: []byte("not json"),
			Campaign: &vigiev1.Campaign{ClickIds: map[string]string{"gclid": "x"}},
			Device:   &vigiev1.Device{Class: "desktop", Bot: true},
		}, `{"campaign":{"click_ids":{"gclid":"x"}},"device":{"bot":true,"class":"desktop"},"mode":"anonymous","properties":{"a":[1,2]},"purposes":["necessary"],"timestamp_ms":-1,"traits":"bm90IGpzb24=","type":"page"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Marshal(c.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
