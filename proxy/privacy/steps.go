package privacy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// runStep runs step name of r (read just before) and commits its outcome.
// Every step is idempotent: after a crash it runs again.
func (s *Service) runStep(ctx context.Context, r *Request, name string) error {
	switch {
	case name == "collect":
		return s.stepCollect(ctx, r)
	case name == "suppress":
		return s.stepSuppress(ctx, r)
	case name == "publish":
		return s.stepPublish(ctx, r)
	case name == "ledger" && r.Type == TypeErase:
		return s.stepErase(ctx, r, eraseDataSteps)
	case name == "verify":
		return s.stepErase(ctx, r, []string{"verify"})
	case name == "ledger":
		return s.stepLimits(ctx, r)
	case name == "profile":
		return s.stepDropProfile(ctx, r)
	case name == "vault":
		return s.stepRectify(ctx, r)
	case strings.HasPrefix(name, "stream:"):
		return s.stepStream(ctx, r, strings.TrimPrefix(name, "stream:"))
	case name == "receipt":
		return s.stepReceipt(ctx, r)
	}
	// A step this version does not know: say so rather than loop.
	_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		r.step(name).set(StatusFailed, "unknown step")
		return true, nil, nil
	})
	return err
}

// stepDone marks step name done with detail (and summary counts) in one commit,
// with msgs.
func (s *Service) stepDone(ctx context.Context, id, name, detail string, counts map[string]int, msgs ...storage.Message) error {
	_, err := s.update(ctx, id, func(r *Request) (bool, []storage.Message, error) {
		if st := r.step(name); st != nil {
			st.set(StatusDone, detail)
		}
		if len(counts) > 0 && r.Summary == nil {
			r.Summary = map[string]int{}
		}
		maps.Copy(r.Summary, counts)
		return true, msgs, nil
	})
	return err
}

// stepCollect counts what an access request's document holds.
func (s *Service) stepCollect(ctx context.Context, r *Request) error {
	doc, err := s.Export(ctx, r)
	if err != nil {
		return err
	}
	counts := map[string]int{"events": len(doc.Events), "email_events": len(doc.EmailEvents), "profiles": len(doc.Profiles),
		"consent_history": len(doc.Consent.History), "sync_history": len(doc.SyncHistory), "vault_traits": len(doc.VaultTraits)}
	detail := "the export is built on demand from what is held now"
	if s.cfg.Peers != nil {
		detail = "the export is built from what every node holds when the request is done"
	}
	return s.stepDone(ctx, r.ID, "collect", detail, counts)
}

// stepSuppress records suppression entries for the identifier given and
// every blind-index value of the subjects (e-mails, phones, user ids seen
// in their identify events), then loads them into the door's set.
func (s *Service) stepSuppress(ctx context.Context, r *Request) error {
	var entries []storage.IndexEntry
	for _, m := range r.Options.SuppressMACs {
		entries = append(entries, storage.IndexEntry{Kind: m.Kind, MAC: m.MAC})
	}
	for _, subj := range r.Subjects {
		es, err := s.cfg.Store.SubjectIndex(ctx, r.Site, subj)
		if err != nil {
			return err
		}
		entries = append(entries, es...)
		if e, ok := s.cfg.Blind.Entry(r.Site, KindSubject, subj, ""); ok {
			entries = append(entries, e)
		}
	}
	if len(entries) > 0 {
		if err := s.cfg.Store.PutSuppressions(ctx, r.Site, entries, storage.Suppression{RequestID: r.ID, AtMs: time.Now().UnixMilli()}); err != nil {
			return err
		}
		s.addSuppressed(r.Site, entries)
	}
	_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		r.step("suppress").set(StatusDone, fmt.Sprintf("%d blind-index value(s) suppressed: later events naming them are dropped", len(entries)))
		r.Options.SuppressMACs = nil
		return true, nil, nil
	})
	return err
}

// addSuppressed adds entries to the door's set (copy on write).
func (s *Service) addSuppressed(site string, entries []storage.IndexEntry) {
	s.mu.Lock() // writers of the set; readers load the pointer
	defer s.mu.Unlock()
	old := *s.supp.Load()
	set := make(map[string]struct{}, len(old)+len(entries))
	maps.Copy(set, old)
	for _, e := range entries {
		set[suppKey(site, e.Kind, e.MAC)] = struct{}{}
	}
	s.supp.Store(&set)
}

// stepPublish commits the erasure event to the outbox together with the
// step's completion and the steps that wait for it: one per plugin, one per
// stream, then a last verification.
//
// In cluster mode, a node's part of another node's erasure has this step
// when it found subjects the receiving node did not: its event names only
// those, under partEventID (so its Nats-Msg-Id and the plugins'
// acknowledgements are its own), and its stream steps clean them.
func (s *Service) stepPublish(ctx context.Context, r *Request) error {
	eventID, subjects, err := s.eventSubjects(ctx, r)
	if err != nil {
		return err
	}
	if len(subjects) == 0 {
		_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
			r.step("publish").set(StatusSkipped, "no subject found: nothing to announce")
			return true, nil, nil
		})
		return err
	}
	pe := privacyEvent(r, vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE)
	pe.RequestId, pe.Subjects, pe.Subject = eventID, subjects, subjects[0]
	msg, err := ledger.PrivacyMessage(pe)
	if err != nil {
		return err
	}
	// Before the vault goes: what the destinations need to delete the
	// person downstream (contacts.go); in cluster mode, with what every
	// live member contributed, readable by every node before the event can
	// reach a syncer.
	sealed, down, err := s.eventContacts(ctx, r, eventID, subjects)
	if err != nil {
		return err
	}
	if sealed != nil && s.cfg.Peers != nil {
		if err := s.shareContacts(ctx, eventID, sealed); err != nil {
			return err
		}
	}
	detail := "vigie.privacy." + r.Site + ".erase committed to the outbox"
	if r.Origin != "" {
		detail += fmt.Sprintf(" for the %d subject(s) node %s did not find", len(subjects), r.Origin)
	}
	if len(down) > 0 {
		detail += fmt.Sprintf("; node %s was down: the contacts its syncers were given reach only its own event, if it has one", strings.Join(down, ", "))
	}
	pluginSteps, err := s.pluginSteps(ctx)
	if err != nil {
		return err
	}
	_, err = s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		st := r.step("publish")
		if st.Status == StatusDone {
			return false, nil, nil
		}
		st.set(StatusDone, detail)
		later := slices.Clone(pluginSteps)
		for _, name := range s.cfg.Streams {
			later = append(later, Step{Name: "stream:" + name, Status: StatusPending})
		}
		later = append(later, Step{Name: "verify", Status: StatusPending})
		i := slices.IndexFunc(r.Steps, func(st Step) bool { return st.Name == "receipt" })
		r.Steps = slices.Insert(r.Steps, i, later...)
		return true, []storage.Message{msg}, nil
	})
	return err
}

// pluginSteps are the steps an erasure event waits for, one per plugin's
// acknowledgement; in cluster mode, one per member for a node-scoped
// plugin (Config.NodeScoped), whose every node's instance forgets on its
// own.
func (s *Service) pluginSteps(ctx context.Context) ([]Step, error) {
	var members []string
	var steps []Step
	for _, p := range s.cfg.Plugins {
		if s.cfg.Peers == nil || s.cfg.NodeScoped == nil || !s.cfg.NodeScoped(p) {
			steps = append(steps, Step{Name: pluginStep(p, ""), Status: StatusPending, Detail: "waiting for the plugin's acknowledgement"})
			continue
		}
		if members == nil {
			var err error
			if members, err = s.cfg.Peers.MemberNodes(ctx); err != nil {
				return nil, fmt.Errorf("privacy: cluster membership: %w", err)
			}
		}
		for _, n := range members {
			steps = append(steps, Step{Name: pluginStep(p, n), Status: StatusPending, Detail: "waiting for node " + n + "'s instance of the plugin to forget"})
		}
	}
	return steps, nil
}

// eventContacts returns the sealed contacts of r's erasure event eventID
// (nil: none) and the members not waited for (down): this node's capture
// of subjects, with, on the receiving node in cluster mode, every member's
// contribution; in a member's part, the contribution it made when it
// accepted the request (contacts.go).
func (s *Service) eventContacts(ctx context.Context, r *Request, eventID string, subjects []string) ([]byte, []string, error) {
	if s.cfg.Peers == nil {
		sealed, err := s.captureContacts(ctx, r.Site, eventID, subjects, nil)
		return sealed, nil, err
	}
	if r.Origin != "" {
		sealed, err := s.cfg.Store.RequestContacts(ctx, eventID)
		if errors.Is(err, storage.ErrNotFound) { // accepted by a version that did not contribute
			sealed, err = s.captureContacts(ctx, r.Site, eventID, subjects, nil)
		}
		return sealed, nil, err
	}
	more, down, err := s.memberContacts(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	sealed, err := s.captureContacts(ctx, r.Site, eventID, subjects, more)
	return sealed, down, err
}

// eventSubjects returns the request id r's erasure event carries and the
// subjects it names (and its stream steps clean): r's own, or, in a part
// of another node's request, those the receiving node did not find.
func (s *Service) eventSubjects(ctx context.Context, r *Request) (string, []string, error) {
	if r.Origin == "" || s.cfg.Peers == nil {
		return r.ID, r.Subjects, nil
	}
	id := partEventID(r.ID, s.cfg.Peers.Node())
	subjects, err := s.cfg.Store.RequestSubjects(ctx, id)
	return id, subjects, err
}

// stepErase drops every key of the subjects (storage.EraseSubjects) and
// marks steps done with what was found.
func (s *Service) stepErase(ctx context.Context, r *Request, steps []string) error {
	if err := s.markRunning(ctx, r.ID, steps[0]); err != nil {
		return err
	}
	rep, err := s.cfg.Store.EraseSubjects(ctx, r.Site, r.Subjects)
	if err != nil {
		return err
	}
	for _, subj := range r.Subjects {
		s.cfg.Ledger.Forget(r.Site, subj)
	}
	details := map[string]string{
		"ledger":        fmt.Sprintf("%d consent ledger entr(y/ies)", rep.Ledger),
		"events":        fmt.Sprintf("%d event(s)", rep.Events),
		"subject_index": fmt.Sprintf("%d subject index entr(y/ies)", rep.SubjectIndex),
		"links":         fmt.Sprintf("%d subject link(s)", rep.Links),
		"profile":       fmt.Sprintf("%d profile(s), %d segment membership(s), %d segment change(s)", rep.Profiles, rep.Segments, rep.SegmentLog),
		"vault":         fmt.Sprintf("%d vault key(s) and trait set(s): data keys shredded", rep.Vault),
		"blind_index":   fmt.Sprintf("%d blind-index entr(y/ies)", rep.BlindIndex),
		"history":       fmt.Sprintf("%d consent and sync history entr(y/ies)", rep.History),
		"physical":      fmt.Sprintf("%d key(s) dropped with every version (Badger DropPrefix)", rep.Total()),
		"verify":        fmt.Sprintf("%d key(s) written meanwhile found and dropped", rep.Total()),
	}
	var msgs []storage.Message
	if steps[0] == "ledger" && s.cfg.ErasedMessages != nil && r.Origin == "" {
		if msgs, err = s.cfg.ErasedMessages(r.Site, r.Subjects); err != nil {
			return err
		}
	}
	_, err = s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		if r.Summary == nil {
			r.Summary = map[string]int{}
		}
		for _, name := range steps {
			if st := r.step(name); st != nil {
				st.set(StatusDone, details[name])
			}
		}
		if steps[0] == "ledger" {
			r.Summary["events"] += rep.Events
			r.Summary["profiles"] += rep.Profiles
			r.Summary["keys"] += rep.Total()
		} else {
			r.Summary["keys"] += rep.Total()
		}
		return true, msgs, nil
	})
	return err
}

// stepLimits records an objection or restriction (or lifts it) in the
// ledger of every subject, with its privacy event.
func (s *Service) stepLimits(ctx context.Context, r *Request) error {
	action := vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT
	var objected *consent.Set
	var restricted *bool
	if r.Type == TypeObject {
		action = vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT
		set := consent.Set{}
		if !r.Options.Lift {
			set, _ = consent.ParseSet(r.Options.Purposes...)
		}
		objected = &set
	} else {
		v := !r.Options.Lift
		restricted = &v
	}
	pe := privacyEvent(r, action)
	pe.Lifted = r.Options.Lift
	if r.Type == TypeObject && !r.Options.Lift {
		pe.Objected = r.Options.Purposes
	}
	msg, err := ledger.PrivacyMessage(pe)
	if err != nil {
		return err
	}
	if len(r.Subjects) == 0 {
		_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
			r.step("ledger").set(StatusSkipped, "no subject found")
			return true, nil, nil
		})
		return err
	}
	// The entries and the event are committed subject by subject (the
	// event with the first); a crash in between re-runs the step, and the
	// event, with its fixed id, is deduplicated by the stream.
	if err := s.cfg.Ledger.SetLimits(ctx, r.Site, r.Subjects, objected, restricted, "request", msg); err != nil {
		return err
	}
	what := "restriction"
	if r.Type == TypeObject {
		what = "objection to " + strings.Join(r.Options.Purposes, ", ")
	}
	if r.Options.Lift {
		what += " lifted"
	}
	return s.stepDone(ctx, r.ID, "ledger", fmt.Sprintf("%s recorded for %d subject(s); vigie.privacy.%s.%s committed to the outbox", what, len(r.Subjects), r.Site, map[Type]string{TypeObject: "object", TypeRestrict: "restrict"}[r.Type]), nil)
}

// stepDropProfile deletes the subjects' profiles: the segment exits are
// published by the plugin runtime (from the pending list committed with
// the deletion).
func (s *Service) stepDropProfile(ctx context.Context, r *Request) error {
	if r.Options.Lift {
		_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
			r.step("profile").set(StatusSkipped, "lifted: profiling resumes with the next event consent allows")
			return true, nil, nil
		})
		return err
	}
	exits := 0
	for _, subj := range r.Subjects {
		ch, err := s.cfg.Store.DeleteProfile(ctx, r.Site, subj, string(r.Type))
		if err != nil {
			return err
		}
		exits += len(ch)
	}
	return s.stepDone(ctx, r.ID, "profile", fmt.Sprintf("profiles deleted; %d segment exit(s) published", exits), map[string]int{"segment_exits": exits})
}

// stepRectify replaces the vaulted traits of the subjects that have some
// (the first subject's if none has), with the rectify event.
func (s *Service) stepRectify(ctx context.Context, r *Request) error {
	if len(r.Subjects) == 0 {
		_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
			r.step("vault").set(StatusSkipped, "no subject found")
			r.Options.SealedTraits = nil
			return true, nil, nil
		})
		return err
	}
	traits, err := s.cfg.Store.OpenSecret(r.ID, r.Options.SealedTraits)
	if err != nil {
		return err
	}
	defer clear(traits)
	var targets []string
	for _, subj := range r.Subjects {
		if _, err := s.cfg.Store.VaultTraits(subj, r.Site); err == nil {
			targets = append(targets, subj)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	if len(targets) == 0 {
		targets = r.Subjects[:1]
	}
	pe := privacyEvent(r, vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY)
	pe.Fields = r.Options.TraitNames
	msg, err := ledger.PrivacyMessage(pe)
	if err != nil {
		return err
	}
	for i, subj := range targets {
		var m []storage.Message
		if i == 0 {
			m = []storage.Message{msg}
		}
		if err := s.cfg.Store.ReplaceTraits(ctx, r.Site, subj, traits, m...); err != nil {
			return err
		}
	}
	_, err = s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		r.step("vault").set(StatusDone, fmt.Sprintf("traits %s replaced for %d subject(s); vigie.privacy.%s.rectify committed to the outbox",
			strings.Join(r.Options.TraitNames, ", "), len(targets), r.Site))
		r.Options.SealedTraits = nil
		return true, nil, nil
	})
	return err
}

// stepReceipt ends the request. An erasure's receipt keeps no identifier:
// its subjects are cleared, here and in every other request naming them.
func (s *Service) stepReceipt(ctx context.Context, r *Request) error {
	if r.Type == TypeErase && (len(r.Subjects) > 0 || s.cfg.Peers != nil) {
		gone := map[string]bool{}
		for _, subj := range r.Subjects {
			gone[subj] = true
		}
		var others []*Request
		if len(r.Subjects) > 0 {
			var err error
			if others, err = s.List(ctx, "", ""); err != nil {
				return err
			}
		}
		drop := []string{r.ID}
		keep := map[string][]string{}
		var blank []storage.Message
		for _, o := range others {
			if o.ID == r.ID || !slices.ContainsFunc(o.Subjects, func(x string) bool { return gone[x] }) {
				continue
			}
			drop = append(drop, o.ID)
			if rest := slices.DeleteFunc(slices.Clone(o.Subjects), func(x string) bool { return gone[x] }); len(rest) > 0 {
				keep[o.ID] = rest
			}
			if (o.Origin != "" || o.ExportNode != "") && s.cfg.Peers != nil && (o.Type == TypeAccess || o.Type == TypeExport) {
				// This node's sealed part of an earlier export of the
				// person, in the cluster's bucket (a member's, or the
				// receiving node's own once shared): emptied.
				blank = append(blank, s.cfg.Peers.PartMessage(o.ID, s.cfg.Peers.Node(), nil))
			}
		}
		if s.cfg.Peers != nil && r.Origin == "" {
			// The contacts shared for the request's erasure events
			// (contacts.go): this node's and every member's
			// contribution, emptied once every plugin and node is done
			// (a member's own receipt may come before this node's event
			// reached a syncer).
			if _, err := s.cfg.Store.RequestContacts(ctx, r.ID); err == nil {
				blank = append(blank, s.cfg.Peers.ContactMessage(r.ID, nil))
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			for _, st := range r.Steps {
				if node, ok := strings.CutPrefix(st.Name, nodeStepPrefix); ok && st.Status != StatusSkipped {
					blank = append(blank, s.cfg.Peers.ContactMessage(partEventID(r.ID, node), nil))
				}
			}
		}
		if len(blank) > 0 { // committed before the subjects that find them go
			if _, err := s.update(ctx, r.ID, func(*Request) (bool, []storage.Message, error) { return true, blank, nil }); err != nil {
				return err
			}
		}
		// A member may hold a contribution to the contacts
		// (pk/<id>.<node>, contacts.go) without having found a subject.
		dropping := len(r.Subjects) > 0
		if !dropping && r.Origin != "" {
			_, err := s.cfg.Store.RequestContacts(ctx, partEventID(r.ID, s.cfg.Peers.Node()))
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			dropping = err == nil
		}
		if dropping {
			if err := s.cfg.Store.DropRequestSubjects(ctx, drop...); err != nil {
				return err
			}
		}
		for id, rest := range keep {
			if err := s.cfg.Store.PutRequestSubjects(ctx, id, rest); err != nil {
				return err
			}
		}
	}
	var final *Request
	final, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		if r.Summary == nil {
			r.Summary = map[string]int{}
		}
		r.Summary["subjects"] = r.SubjectCount
		var msgs []storage.Message
		detail := ""
		if r.Origin != "" && s.cfg.Peers != nil {
			// This node's part of a request another node received: its
			// step result goes to that node.
			var err error
			if msgs, err = s.reportMessages(ctx, r); err != nil {
				return false, nil, err
			}
			detail = "step reported to node " + r.Origin
		} else if s.cfg.Peers != nil && (r.Type == TypeAccess || r.Type == TypeExport) {
			// Its own part beside the others: the export is served by
			// every node.
			var err error
			if msgs, detail, err = s.shareExport(ctx, r); err != nil {
				return false, nil, err
			}
		}
		r.step("receipt").set(StatusDone, detail)
		finish(r)
		return true, msgs, nil
	})
	if err == nil {
		s.audit(ctx, AuditEntry{At: time.Now().UTC(), Actor: "vigie", Action: "privacy.request." + string(final.Status),
			Site: final.Site, RequestID: final.ID})
	}
	return err
}
