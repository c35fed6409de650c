package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/storage"
)

// An erasure shreds the vault before the plugins hear of it (its data steps
// run while the erasure event travels), yet a CRM destination needs the
// person's e-mail address to delete them downstream. So the publish step
// first captures, for every subject a plugin was given contact details of
// (its sync history), the e-mail and phone from the vault and the names of
// those plugins, sealed under the vault key for the request and kept apart
// from it (storage pk/<id>). The plugin runtime asks for them
// (ErasureContact) when it hands the erasure to a syncer resolving
// contacts; the receipt drops them with every version, with the request's
// subjects. A destination never given the contact gets none: it is never
// told of a person it did not know.

var _ plugins.ErasureContacts = (*Service)(nil)

// capturedContact is what an erasure keeps for the plugins given one
// subject's contact details.
type capturedContact struct {
	Plugins []string `json:"p"`
	Email   string   `json:"e,omitempty"`
	Phone   string   `json:"ph,omitempty"`
}

// captureContacts seals what the erasure event id (naming subjects of
// site) must still reach downstream.
func (s *Service) captureContacts(ctx context.Context, site, id string, subjects []string) error {
	var out []capturedContact
	for _, subj := range subjects {
		hist, err := s.cfg.Store.SyncHistory(ctx, site, subj)
		if err != nil {
			return err
		}
		var given []string
		for _, h := range hist {
			if len(h.Fields) > 0 && !slices.Contains(given, h.Plugin) {
				given = append(given, h.Plugin)
			}
		}
		if len(given) == 0 {
			continue
		}
		raw, err := s.cfg.Store.VaultTraits(subj, site)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		c := plugins.ContactFromTraits(raw)
		clear(raw)
		if c.GetEmail() == "" && c.GetPhone() == "" {
			continue
		}
		out = append(out, capturedContact{Plugins: given, Email: c.GetEmail(), Phone: c.GetPhone()})
	}
	if len(out) == 0 {
		return nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	defer clear(b)
	return s.cfg.Store.PutRequestContacts(ctx, id, s.cfg.Store.SealSecret(id, b))
}

// ErasureContact implements plugins.ErasureContacts: the contact details
// of erasure requestID that plugin was given, captured before the vault
// was shredded.
func (s *Service) ErasureContact(ctx context.Context, site, requestID, plugin string) (*sdk.Contact, error) {
	v, err := s.cfg.Store.RequestContacts(ctx, requestID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, sdk.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	b, err := s.cfg.Store.OpenSecret(requestID, v)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	var cs []capturedContact
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("%w: erasure contacts: %v", storage.ErrCorrupt, err)
	}
	for _, c := range cs {
		if slices.Contains(c.Plugins, plugin) {
			return &sdk.Contact{Email: c.Email, Phone: c.Phone}, nil
		}
	}
	return nil, sdk.ErrNotFound
}
