package segments_test

import (
	"context"
	"fmt"

	"github.com/vigie-dev/vigie/plugins/segments"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// A lead-scoring setup: a demo request is worth 10 points, and subjects
// with 10 points or more are in segment "sales-ready".
func ExampleSegmenter_Segment() {
	config := []byte(`{
	  "scoring":  [{"name": "demo-requested", "points": 10,
	                "when": "event.type == \"track\" && event.name == \"Demo Requested\""}],
	  "segments": [{"name": "sales-ready", "when": "profile.score >= 10"}]
	}`)
	s := segments.New()
	if err := s.Configure(context.Background(), config); err != nil {
		fmt.Println(err)
		return
	}
	ev := &sdk.Event{Id: "ev-1", Site: "shop", Subject: "subj-1", Type: "track",
		Name: "Demo Requested", Purposes: []string{"marketing"}}
	res, _ := s.Segment(context.Background(), ev, &sdk.Profile{Site: "shop", Subject: "subj-1", Score: 2})
	fmt.Println(res.Update.GetScoreDelta())
	for _, c := range res.Changes {
		fmt.Println(c.GetSegment(), c.GetTransition() == vigiev1.Transition_TRANSITION_ENTERED)
	}
	// Output:
	// 10
	// sales-ready true
}

// Validate checks a configuration without running the plugin; errors name
// the segment and the position in its expression.
func ExampleValidate() {
	err := segments.Validate([]byte(`{"segments": [{"name": "fr", "when": "profile.contry == \"FR\""}]}`))
	fmt.Println(err)
	// Output:
	// segments: invalid configuration: segment "fr": ERROR: <input>:1:8: undefined field 'contry'
	//  | profile.contry == "FR"
	//  | .......^
}
