package register

import (
	"encoding/json"
	"slices"

	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/proxy/config"
)

// responseModel returns the view of the built-in response plugin's
// configuration when it is enabled.
func responseModel(cfg config.Config) (response.View, bool) {
	for _, p := range cfg.Plugins {
		if p.Name != "response" || p.Path != "" || p.Disabled {
			continue
		}
		raw, err := json.Marshal(p.Config)
		if err != nil {
			return response.View{}, false
		}
		v, err := response.ParseView(raw)
		return v, err == nil
	}
	return response.View{}, false
}

// profiling is what the activity of purpose says of profiling (Art. 4(4))
// beyond segments: the response model when it is enabled and models
// subjects granting purpose, with what Art. 21 and 22 ask to be told;
// nil otherwise.
func profiling(cfg config.Config, purpose string) []string {
	v, ok := responseModel(cfg)
	if !ok || !slices.Contains(v.Purposes, purpose) {
		return nil
	}
	out := []string{
		"Profiling (Art. 4(4)) by the response plugin: how each contact type (a combination of segments) responds to each message type, from e-mails sent and site messages shown, human opens, clicks and conversions, as time-decayed counts per contact type; per-subject contributions are kept only to remove them exactly on objection or erasure. It recommends the next message type (Thompson sampling) and may write it to the profile for a CRM.",
		"Automated decisions (Art. 22): none with legal or similarly significant effects; the model only chooses which marketing message to send. It must not be used for prices, eligibility or any decision about a person's rights.",
		"Right to object (Art. 21(2)-(3)): an objection to marketing (a privacy request of type object, the preference page) removes the person's contribution and keeps their later events out of the model until it is lifted; the privacy notice must say so.",
		"Sensitive data (Art. 9): events flagged sensitive never enter the model.",
	}
	return out
}

// profilingCategory is the data category of the response model for
// purpose, if it is modelled.
func profilingCategory(cfg config.Config, purpose string) (DataCategory, bool) {
	if profiling(cfg, purpose) == nil {
		return DataCategory{}, false
	}
	return DataCategory{"Response profile", "Vie personnelle (profil, centres d'intérêt)",
		"Per contact type × message type: decayed exposure, response and conversion counts; per subject, until they decay or are removed: its contributions and the exposures awaiting a response (message type, campaign, time), and its recommended next message type as a profile attribute."}, true
}
