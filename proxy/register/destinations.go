package register

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/vigie-dev/vigie/plugins/crm"
	"github.com/vigie-dev/vigie/proxy/config"
)

// vendors name each connector's recipient.
var vendors = map[string]string{
	crm.ConnectorHubSpot: "HubSpot",
	crm.ConnectorBrevo:   "Brevo",
	crm.ConnectorWebhook: "Webhook endpoint",
}

// Destinations are the CRM destinations of cfg (the plugin entries running
// the built-in crm) as recipients: processors given contact details for
// their purposes, with where they keep them (the destination's location).
// An invalid destination is left out (the configuration refuses it).
func Destinations(cfg config.Config) []Recipient {
	var out []Recipient
	for _, p := range cfg.Plugins {
		if p.Disabled || p.BuiltinName() != crm.Name {
			continue
		}
		raw, err := json.Marshal(p.Config)
		if err != nil {
			continue
		}
		c, err := crm.Parse(raw)
		if err != nil || c.Connector == crm.ConnectorNoop {
			continue // refused by the configuration, or sends nothing
		}
		got := []string{"e-mail address (the contact's identifier)"}
		var fields []string
		for prop, src := range c.Fields {
			fields = append(fields, prop+" ← "+src)
		}
		sort.Strings(fields)
		if len(fields) > 0 {
			got = append(got, "mapped fields "+strings.Join(fields, ", "))
		}
		segs := "every segment"
		if len(c.Segments) > 0 {
			segs = "segments " + strings.Join(c.Segments, ", ")
		}
		got = append(got, "membership of "+segs+" and the lead score",
			"for subjects whose current consent grants "+strings.Join(c.Purposes, ", ")+"; then their withdrawals, objections and restrictions (unsubscribed) and erasures (deleted), each reported in the privacy request")
		r := Recipient{
			Name:         fmt.Sprintf("%s (CRM destination %s, connector %s)", vendors[c.Connector], p.Name, c.Connector),
			Kind:         Processor,
			Receives:     strings.Join(got, "; ") + ".",
			PersonalData: true,
			Purposes:     slices.Clone(c.Purposes),
			Country:      c.Location,
		}
		if c.Location != "" && !inEEA(c.Location) {
			r.Guarantee = "to complete: the provider's EU-US Data Privacy Framework certification, or the standard contractual clauses of its data processing agreement"
		}
		out = append(out, r)
	}
	return out
}

// inEEA reports a location inside the European Economic Area ("EU" or an
// EEA country code).
func inEEA(loc string) bool {
	loc = strings.ToUpper(loc)
	return loc == "EU" || slices.Contains(eea, loc)
}
