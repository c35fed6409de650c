package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/cluster"
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
//
// In cluster mode the plugins share their consumers, so the erasure event
// is often handled by a node that did not capture them: the same sealed
// contacts are put in the cluster's requests bucket (Peers.ContactMessage,
// through the outbox), and the publish step commits the event only once
// they are readable there; the receipt empties them and the request's
// purge removes the key.

var _ plugins.ErasureContacts = (*Service)(nil)

// capturedContact is what an erasure keeps for the plugins given one
// subject's contact details.
type capturedContact struct {
	Plugins []string `json:"p"`
	Email   string   `json:"e,omitempty"`
	Phone   string   `json:"ph,omitempty"`
}

// captureContacts seals what the erasure event id (naming subjects of
// site) must still reach downstream, stores it and returns it (nil: no
// contact to keep).
func (s *Service) captureContacts(ctx context.Context, site, id string, subjects []string) ([]byte, error) {
	var out []capturedContact
	for _, subj := range subjects {
		hist, err := s.cfg.Store.SyncHistory(ctx, site, subj)
		if err != nil {
			return nil, err
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
			return nil, err
		}
		c := plugins.ContactFromTraits(raw)
		clear(raw)
		if c.GetEmail() == "" && c.GetPhone() == "" {
			continue
		}
		out = append(out, capturedContact{Plugins: given, Email: c.GetEmail(), Phone: c.GetPhone()})
	}
	if len(out) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	sealed := s.cfg.Store.SealSecret(id, b)
	return sealed, s.cfg.Store.PutRequestContacts(ctx, id, sealed)
}

// shareWait bounds how long the publish step waits for the contacts it
// committed to the outbox to be readable in the cluster; past it the step
// fails and is run again.
const shareWait = 10 * time.Second

// shareContacts commits sealed, the contacts of erasure event id, to the
// outbox for the cluster's bucket and returns once any node can read them
// (a step retried after a crash finds them there already).
func (s *Service) shareContacts(ctx context.Context, id string, sealed []byte) error {
	if v, err := s.cfg.Peers.Contact(ctx, id); err == nil && len(v) > 0 {
		return nil
	}
	if err := s.cfg.Store.Enqueue(ctx, s.cfg.Peers.ContactMessage(id, sealed)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, shareWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		v, err := s.cfg.Peers.Contact(ctx, id)
		if err == nil && len(v) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the erasure's contacts are not yet readable in the cluster", cluster.ErrUnavailable)
		case <-t.C:
		}
	}
}

// ErasureContact implements plugins.ErasureContacts: the contact details
// of erasure requestID that plugin was given, captured before the vault
// was shredded.
func (s *Service) ErasureContact(ctx context.Context, site, requestID, plugin string) (*sdk.Contact, error) {
	v, err := s.cfg.Store.RequestContacts(ctx, requestID)
	if errors.Is(err, storage.ErrNotFound) && s.cfg.Peers != nil {
		// Captured by another node (cluster mode).
		v, err = s.cfg.Peers.Contact(ctx, requestID)
		if err == nil && len(v) == 0 {
			err = storage.ErrNotFound
		}
	}
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
