// Command minimal is the smallest useful Vigie plugin, the listing of
// README.md step 2: an enricher that lower-cases the campaign source.
package main

import (
	"context"
	"strings"

	"github.com/vigie-dev/vigie/sdk"
)

// lowerSource is the enricher: one method per hook it serves.
type lowerSource struct{}

// Enrich lower-cases the campaign source of each event of the batch.
func (lowerSource) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	for _, ev := range events {
		if c := ev.GetCampaign(); c != nil {
			c.Source = strings.ToLower(strings.TrimSpace(c.GetSource()))
		}
	}
	return events, nil
}

// manifest tells Vigie who the plugin is and what it may receive and call.
var manifest = sdk.Manifest{
	Name:        "lower-source",
	Version:     "0.1.0",
	Description: "Lower-cases the campaign source.",
	Filter:      sdk.Filter{Types: []string{"page", "track"}},
}

func main() {
	sdk.Serve(sdk.Plugin{Manifest: manifest, Enricher: lowerSource{}})
}
