package pipeline

import "github.com/vigie-dev/vigie/proxy/pseudonymize"

// ScrubObject scrubs a JSON object as the properties of an event are
// scrubbed on s (personal names removed, personal data in values replaced
// by markers), for what reaches a profile without being an event's
// property: an import's attributes.
func (s *Site) ScrubObject(raw []byte, c *pseudonymize.Counts) ([]byte, error) {
	return s.pseudo.ScrubProperties(nil, raw, c)
}
