package main

import (
	"testing"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

func TestLowerSource(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{
		Plugin: sdk.Plugin{Manifest: manifest, Enricher: lowerSource{}},
	})
	h.RunEnrich(t, []sdktest.EnrichCase{
		{
			Name: "lower-cases and trims",
			In:   []*sdk.Event{{Id: "1", Campaign: &vigiev1.Campaign{Source: " Google "}}},
			Want: []*sdk.Event{{Id: "1", Campaign: &vigiev1.Campaign{Source: "google"}}},
		},
		{
			Name: "no campaign, unchanged",
			In:   []*sdk.Event{{Id: "2", Type: "page"}},
			Want: []*sdk.Event{{Id: "2", Type: "page"}},
		},
	})
}
