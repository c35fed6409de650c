package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// they are readable there; the receiving node's receipt empties them and
// the request's purge removes the key.

var _ plugins.ErasureContacts = (*Service)(nil)

// capturedContact is what an erasure keeps for the plugins given one
// subject's contact details.
type capturedContact struct {
	Plugins []string `json:"p"`
	Email   string   `json:"e,omitempty"`
	Phone   string   `json:"ph,omitempty"`
}

// collectContacts returns, for every one of subjects a plugin was given
// contact details of (this node's sync history), the e-mail and phone from
// this node's vault and the names of those plugins (none: nil).
func (s *Service) collectContacts(ctx context.Context, site string, subjects []string) ([]capturedContact, error) {
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
	return out, nil
}

// sealContacts seals cs under the vault key for erasure event id.
func (s *Service) sealContacts(id string, cs []capturedContact) ([]byte, error) {
	if cs == nil {
		cs = []capturedContact{} // "none", still a contribution (contribute)
	}
	b, err := json.Marshal(cs)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return s.cfg.Store.SealSecret(id, b), nil
}

// openContacts opens contacts sealed for erasure event id.
func (s *Service) openContacts(id string, sealed []byte) ([]capturedContact, error) {
	b, err := s.cfg.Store.OpenSecret(id, sealed)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	var cs []capturedContact
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("%w: erasure contacts: %v", storage.ErrCorrupt, err)
	}
	return cs, nil
}

// captureContacts seals what the erasure event id (naming subjects of
// site) must still reach downstream, with more (the other nodes'
// contributions), stores it and returns it (nil: no contact to keep).
func (s *Service) captureContacts(ctx context.Context, site, id string, subjects []string, more []capturedContact) ([]byte, error) {
	out, err := s.collectContacts(ctx, site, subjects)
	if err != nil {
		return nil, err
	}
	out = append(out, more...)
	if len(out) == 0 {
		return nil, nil
	}
	sealed, err := s.sealContacts(id, out)
	if err != nil {
		return nil, err
	}
	return sealed, s.cfg.Store.PutRequestContacts(ctx, id, sealed)
}

// In cluster mode the sync history is each syncing node's own, and the
// vault each ingesting node's: the receiving node's capture alone misses
// a contact another node's syncer was given. So every member contributes,
// when it accepts an erasure's announcement (before any of its data is
// erased: the receiving node's tombstones come after its publish step),
// the contacts its own sync history and vault hold for the subjects it
// found and those the receiving node's event names, sealed for its own
// event id (partEventID; a sealed empty list when it holds none), through
// the outbox with its part. The receiving node's publish step waits until
// every live member's contribution is readable (or the member reported
// its step: it could not resolve), merges them into its own capture and
// only then commits its event; a member's own event (its extra subjects)
// carries its contribution. The receiving node's receipt empties them all,
// once every plugin and node is done.

// contribute captures and seals this node's contribution to erasure
// request id's contacts (partEventID: its own event id), stores it when
// it holds any (its own event and its receipt find it) and returns the
// outbox message that shares it, committed with the part.
func (s *Service) contribute(ctx context.Context, site, id string, subjects []string) (storage.Message, error) {
	eventID := partEventID(id, s.cfg.Peers.Node())
	cs, err := s.collectContacts(ctx, site, subjects)
	if err != nil {
		return storage.Message{}, err
	}
	sealed, err := s.sealContacts(eventID, cs)
	if err != nil {
		return storage.Message{}, err
	}
	if len(cs) > 0 {
		if err := s.cfg.Store.PutRequestContacts(ctx, eventID, sealed); err != nil {
			return storage.Message{}, err
		}
	}
	return s.cfg.Peers.ContactMessage(eventID, sealed), nil
}

// memberContacts returns the contributions of r's members (its node
// steps), waiting up to shareWait for those of the live members that have
// not reported their step; it returns the members it did not wait for
// (down). Past shareWait it fails, and the publish step runs again.
func (s *Service) memberContacts(ctx context.Context, r *Request) ([]capturedContact, []string, error) {
	p := s.cfg.Peers
	var pending []string
	for _, st := range r.Steps {
		if node, ok := strings.CutPrefix(st.Name, nodeStepPrefix); ok && st.Status != StatusSkipped {
			pending = append(pending, node)
		}
	}
	if len(pending) == 0 {
		return nil, nil, nil
	}
	live, err := p.LiveNodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []capturedContact
	var down []string
	ctx, cancel := context.WithTimeout(ctx, shareWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		var still []string
		for _, node := range pending {
			eventID := partEventID(r.ID, node)
			v, err := p.Contact(ctx, eventID)
			if err != nil {
				return nil, nil, err
			}
			if len(v) > 0 {
				cs, err := s.openContacts(eventID, v)
				if err != nil {
					return nil, nil, fmt.Errorf("privacy: node %s's contacts: %w", node, err)
				}
				out = append(out, cs...)
				continue
			}
			if !slices.Contains(live, node) {
				down = append(down, node)
				continue
			}
			if st, err := p.Step(ctx, r.ID, node); err != nil {
				return nil, nil, err
			} else if st != nil { // reported without contributing: it could not resolve
				continue
			}
			still = append(still, node)
		}
		if pending = still; len(pending) == 0 {
			return out, down, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: node %s's contacts for the erasure are not yet readable", cluster.ErrUnavailable, strings.Join(pending, ", "))
		case <-t.C:
		}
	}
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
	cs, err := s.openContacts(requestID, v)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if slices.Contains(c.Plugins, plugin) {
			return &sdk.Contact{Email: c.Email, Phone: c.Phone}, nil
		}
	}
	return nil, sdk.ErrNotFound
}
