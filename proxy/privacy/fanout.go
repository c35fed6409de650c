package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/storage"
)

// Peers is the rest of the cluster as the privacy requests see it
// (cluster mode; nil for a single node): *cluster.Requests is one. A
// request received by this node is announced to every member through the
// outbox; each member runs its own part (resolve with its blind index,
// erase, rectify, collect) and reports its step; the request is done
// when every member's step is.
type Peers interface {
	// Node is this node's id.
	Node() string
	// MemberNodes lists every member, live or not.
	MemberNodes(ctx context.Context) ([]string, error)
	// LiveNodes lists the live members.
	LiveNodes(ctx context.Context) ([]string, error)
	// AnnounceMessage, StepMessage, PartMessage and ViewMessage are the
	// outbox messages that write a request's announcement, a node's step
	// result, a node's sealed export part and the receiving node's view.
	AnnounceMessage(id string, v []byte) storage.Message
	StepMessage(id, node string, v []byte) storage.Message
	PartMessage(id, node string, sealed []byte) storage.Message
	ViewMessage(id string, v []byte) storage.Message
	// AckMessage carries a plugin's acknowledgement received by a node
	// other than the request's (the plugins share their consumers).
	AckMessage(id, plugin string, v []byte) storage.Message
	// Step, Part, View and Ack read them back ((nil, nil) when absent; an
	// emptied part is empty, not nil).
	Step(ctx context.Context, id, node string) ([]byte, error)
	Ack(ctx context.Context, id, plugin string) ([]byte, error)
	Part(ctx context.Context, id, node string) ([]byte, error)
	View(ctx context.Context, id string) ([]byte, error)
	// Watch hands fn every announcement, those made while this node was
	// down included, until ctx ends.
	Watch(ctx context.Context, fn func(ctx context.Context, v []byte) error)
	// ContactMessage carries the sealed contacts an erasure event's
	// syncers need, or a member's contribution to them (partEventID; nil:
	// emptied), and Contact reads them back on any node ((nil, nil) when
	// absent): the plugins share their consumers.
	ContactMessage(eventID string, sealed []byte) storage.Message
	Contact(ctx context.Context, eventID string) ([]byte, error)
	// Purge removes every entry of the requests expired says have
	// outlived their retention (handed the id and the view, nil if none).
	Purge(ctx context.Context, expired func(id string, view []byte) bool) (int, error)
}

// nodeStepPrefix starts the name of the step that waits for another
// node's part.
const nodeStepPrefix = "node:"

// announcement is a request as announced to the other nodes: nothing
// identifying in clear (the lookup material is sealed).
type announcement struct {
	ID             string    `json:"id"`
	Type           Type      `json:"type"`
	Site           string    `json:"site"`
	Origin         string    `json:"origin"`
	Members        []string  `json:"members"`
	CreatedAt      time.Time `json:"created_at"`
	Deadline       time.Time `json:"deadline"`
	IdentifierKind string    `json:"identifier_kind"`
	Options        Options   `json:"options"`
	// Sealed is the lookup, sealed under the keyring's vault key
	// (storage.Store.SealSecret with the request id).
	Sealed []byte `json:"sealed"`
}

// lookup is what finds the person on a node: the pseudonyms of the
// identifier under every active key and its blind-index entries (keyed
// MACs), plus the MACs an erasure suppresses. Never the identifier.
type lookup struct {
	Pseudonyms   []string             `json:"pseudonyms,omitempty"`
	Entries      []storage.IndexEntry `json:"entries,omitempty"`
	SuppressMACs []SuppressMAC        `json:"suppress_macs,omitempty"`
	// Subjects (erase) are the pseudonyms the receiving node found, which
	// its erasure event names: a member announces only the others.
	Subjects []string `json:"subjects,omitempty"`
}

// partEventID is the request id of the erasure event node publishes, in
// its part of request id, for the subjects only it found: the plugins'
// acknowledgements of that event (and its Nats-Msg-Id,
// streams.PrivacyMsgID) are the node's, apart from the receiving node's.
// Its subjects and captured contacts are stored under it, so dropping
// the request's (storage.DropRequestSubjects, a prefix) drops them too.
func partEventID(id, node string) string { return id + "." + node }

// nodeResult is a node's step result as it reports it: status, counts,
// no identifier.
type nodeResult struct {
	Status   Status         `json:"status"`
	Detail   string         `json:"detail"`
	Subjects int            `json:"subjects"`
	Counts   map[string]int `json:"counts,omitempty"`
	At       time.Time      `json:"at"`
}

// partAAD is the additional data a node's export part is sealed with.
func partAAD(id, node string) string { return id + "\x00part\x00" + node }

// announce adds to r (being created, lookup l) one step per other member
// and returns the announcement's outbox message (none without peers or
// other members).
func (s *Service) announce(ctx context.Context, r *Request, l lookup) ([]storage.Message, error) {
	p := s.cfg.Peers
	if p == nil {
		return nil, nil
	}
	members, err := p.MemberNodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("privacy: cluster membership: %w", err)
	}
	others := slices.DeleteFunc(slices.Clone(members), func(n string) bool { return n == p.Node() })
	if len(others) == 0 {
		return nil, nil
	}
	i := slices.IndexFunc(r.Steps, func(st Step) bool { return st.Name == "receipt" })
	var steps []Step
	for _, n := range others {
		steps = append(steps, Step{Name: nodeStepPrefix + n, Status: StatusPending, Detail: "waiting for node " + n + "'s step"})
	}
	r.Steps = slices.Insert(r.Steps, i, steps...)
	lb, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	opts := r.Options
	opts.SuppressMACs = nil
	a := announcement{ID: r.ID, Type: r.Type, Site: r.Site, Origin: p.Node(), Members: members, CreatedAt: r.CreatedAt,
		Deadline: r.Deadline, IdentifierKind: r.IdentifierKind, Options: opts, Sealed: s.cfg.Store.SealSecret(r.ID, lb)}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return []storage.Message{p.AnnounceMessage(r.ID, b)}, nil
}

// accept records this node's part of a request another node announced
// (Peers.Watch's handler): it resolves the person with this node's own
// blind index and stores the part, which the runner then carries out and
// reports. An announcement this node is not a member of, its own, or one
// already held is skipped.
func (s *Service) accept(ctx context.Context, v []byte) error {
	var a announcement
	if err := json.Unmarshal(v, &a); err != nil || a.ID == "" {
		s.log.Warn("privacy: unreadable request announcement skipped")
		return nil
	}
	self := s.cfg.Peers.Node()
	if a.Origin == self || !slices.Contains(a.Members, self) {
		return nil
	}
	if _, err := s.Get(ctx, a.ID); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	r := &Request{ID: a.ID, Origin: a.Origin, Type: a.Type, Site: a.Site, Status: StatusPending, CreatedAt: a.CreatedAt,
		Deadline: a.Deadline, IdentifierKind: a.IdentifierKind, Options: a.Options}
	step := func(name string) { r.Steps = append(r.Steps, Step{Name: name, Status: StatusPending}) }
	step("resolve")
	var l lookup
	b, err := s.cfg.Store.OpenSecret(a.ID, a.Sealed)
	if err == nil {
		err = json.Unmarshal(b, &l)
	}
	if err != nil {
		// Not this cluster's keyring: say so in the step the origin shows.
		r.Steps[0].set(StatusFailed, "the request's lookup does not open with this node's keyring (copy the cluster's keyring.json)")
		step("receipt")
		return s.save(ctx, r)
	}
	subjects, err := s.resolveKeys(ctx, a.Site, l)
	if err != nil {
		return err
	}
	r.Subjects, r.SubjectCount = subjects, len(subjects)
	r.Steps[0].set(StatusDone, fmt.Sprintf("%d subject(s) found with this node's blind index", len(subjects)))
	var msgs []storage.Message
	switch a.Type {
	case TypeErase:
		// The contacts this node's syncers were given, before anything of
		// the person is erased here (contacts.go): committed with the part.
		m, err := s.contribute(ctx, a.Site, a.ID, slices.Compact(slices.Sorted(slices.Values(slices.Concat(subjects, l.Subjects)))))
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		if a.Options.Suppress {
			r.Options.SuppressMACs = l.SuppressMACs
			step("suppress")
		}
		// The subjects the receiving node's erasure event does not name:
		// this node announces them to the plugins and cleans the streams
		// of them itself (stepPublish), before its data steps.
		known := map[string]bool{}
		for _, subj := range l.Subjects {
			known[subj] = true
		}
		extra := slices.DeleteFunc(slices.Clone(subjects), func(x string) bool { return known[x] })
		if len(extra) > 0 {
			if err := s.cfg.Store.PutRequestSubjects(ctx, partEventID(r.ID, self), extra); err != nil {
				return err
			}
			step("publish")
		}
		for _, name := range eraseDataSteps {
			step(name)
		}
	case TypeObject, TypeRestrict:
		step("ledger")
		step("profile")
	case TypeRectify:
		step("vault")
	}
	step("receipt")
	if len(subjects) > 0 {
		if err := s.cfg.Store.PutRequestSubjects(ctx, r.ID, subjects); err != nil {
			return err
		}
	}
	if err := s.save(ctx, r, msgs...); err != nil {
		return err
	}
	s.signal()
	return nil
}

// reportMessages are the outbox messages, committed with a part's
// receipt, that report this node's step (and, for an access or export
// request, its sealed part of the document).
func (s *Service) reportMessages(ctx context.Context, r *Request) ([]storage.Message, error) {
	p := s.cfg.Peers
	res := nodeResult{Status: StatusDone, Subjects: r.SubjectCount, Counts: maps.Clone(r.Summary), At: time.Now().UTC()}
	var failed, unsupported []string
	acks := 0
	for _, st := range r.Steps {
		if st.Status == StatusFailed {
			failed = append(failed, st.Name+" ("+st.Detail+")")
		}
		if st.Status == StatusNotSupported { // a plugin of its own event
			unsupported = append(unsupported, st.Name+" ("+st.Detail+")")
		}
		if strings.HasPrefix(st.Name, pluginStepPrefix) && st.Status.terminal() {
			acks++
		}
	}
	if acks > 0 {
		if res.Counts == nil {
			res.Counts = map[string]int{}
		}
		res.Counts["plugin_acks"] = acks
	}
	var msgs []storage.Message
	if len(failed) == 0 && (r.Type == TypeAccess || r.Type == TypeExport) {
		sealed, doc, err := s.sealedPart(ctx, r)
		if err != nil {
			return nil, err
		}
		if len(sealed) > cluster.MaxValue {
			failed = append(failed, fmt.Sprintf("collect (its part, %d bytes, is larger than the %d a node may send)", len(sealed), cluster.MaxValue))
		} else {
			msgs = append(msgs, p.PartMessage(r.ID, p.Node(), sealed))
			if res.Counts == nil {
				res.Counts = map[string]int{}
			}
			res.Counts["events"], res.Counts["profiles"], res.Counts["vault_traits"] = len(doc.Events), len(doc.Profiles), len(doc.VaultTraits)
		}
	}
	res.Detail = fmt.Sprintf("%d subject(s)", r.SubjectCount)
	for _, k := range slices.Sorted(maps.Keys(res.Counts)) {
		res.Detail += fmt.Sprintf(", %s %d", k, res.Counts[k])
	}
	if len(failed) > 0 {
		res.Status, res.Detail = StatusFailed, "failed: "+strings.Join(failed, "; ")
	} else if len(unsupported) > 0 {
		res.Status, res.Detail = StatusNotSupported, res.Detail+"; not supported: "+strings.Join(unsupported, "; ")
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return append(msgs, p.StepMessage(r.ID, p.Node(), b)), nil
}

// sealedPart is this node's part of r's export (localExport), sealed
// under the keyring's vault key for the cluster's bucket, and the part.
func (s *Service) sealedPart(ctx context.Context, r *Request) ([]byte, *Export, error) {
	doc, err := s.localExport(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	sealed := s.cfg.Store.SealSecret(partAAD(r.ID, s.cfg.Peers.Node()), b)
	clear(b)
	return sealed, doc, nil
}

// shareExport returns the outbox message, committed with the receipt of
// r (an access or export request this node received, cluster mode), that
// puts this node's own sealed part of the export beside the other
// members' parts, and sets r.ExportNode: every node then assembles the
// same export (sharedExport). A part larger than a node may send is not
// shared: the export stays served by this node only, as detail says.
func (s *Service) shareExport(ctx context.Context, r *Request) ([]storage.Message, string, error) {
	sealed, _, err := s.sealedPart(ctx, r)
	if err != nil {
		return nil, "", err
	}
	if len(sealed) > cluster.MaxValue {
		return nil, fmt.Sprintf("this node's part of the export (%d bytes) is larger than the %d a node may send: the export is served by this node only", len(sealed), cluster.MaxValue), nil
	}
	r.ExportNode = s.cfg.Peers.Node()
	return []storage.Message{s.cfg.Peers.PartMessage(r.ID, r.ExportNode, sealed)},
		"this node's part of the export shared with the cluster, sealed: every node serves the same export", nil
}

// pollNodes updates request id's node steps from what the nodes reported:
// a node that reported has its step set to its result (its counts added
// to the summary); one removed from the membership has its step skipped;
// the others stay pending, their detail saying whether the node is live.
func (s *Service) pollNodes(ctx context.Context, r *Request) error {
	p := s.cfg.Peers
	results := map[string]nodeResult{}
	acks := map[string]plugins.PrivacyAck{}
	waiting := false
	ackID := r.ID
	if r.Origin != "" { // this node's part: the acks of its own event
		ackID = partEventID(r.ID, p.Node())
	}
	for _, st := range r.Steps {
		if plugin, ok := strings.CutPrefix(st.Name, pluginStepPrefix); ok && !st.Status.terminal() {
			b, err := p.Ack(ctx, ackID, plugin)
			if err != nil {
				return err
			}
			var a plugins.PrivacyAck
			if b != nil && json.Unmarshal(b, &a) == nil {
				acks[st.Name] = a
			} else if pluginStepNode(st.Name) != "" {
				waiting = true
			}
			continue
		}
		node, ok := strings.CutPrefix(st.Name, nodeStepPrefix)
		if !ok || st.Status.terminal() {
			continue
		}
		b, err := p.Step(ctx, r.ID, node)
		if err != nil {
			return err
		}
		var res nodeResult
		if b != nil && json.Unmarshal(b, &res) == nil && res.Status.terminal() {
			results[node] = res
		} else {
			waiting = true
		}
	}
	var members, live []string
	if waiting {
		var err error
		if members, err = p.MemberNodes(ctx); err != nil {
			return err
		}
		if live, err = p.LiveNodes(ctx); err != nil {
			return err
		}
	}
	_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
		changed := false
		for i := range r.Steps {
			st := &r.Steps[i]
			if a, ok := acks[st.Name]; ok && !st.Status.terminal() {
				st.set(ackStatus(a.Status), a.Detail)
				changed = true
				continue
			}
			if node := pluginStepNode(st.Name); node != "" && !st.Status.terminal() && waiting {
				changed = waitPluginNode(st, node, members, live) || changed
				continue
			}
			node, ok := strings.CutPrefix(st.Name, nodeStepPrefix)
			if !ok || st.Status.terminal() {
				continue
			}
			if res, ok := results[node]; ok {
				st.set(res.Status, "node "+node+": "+res.Detail)
				if len(res.Counts) > 0 && r.Summary == nil {
					r.Summary = map[string]int{}
				}
				for k, n := range res.Counts {
					if k != "subjects" {
						r.Summary[k] += n
					}
				}
				changed = true
				continue
			}
			if !waiting {
				continue
			}
			detail := "waiting for node " + node + " (down: its step runs when it is back, or an operator removes it from the cluster)"
			if slices.Contains(live, node) {
				detail = "waiting for node " + node + " (live)"
			}
			if !slices.Contains(members, node) {
				st.set(StatusSkipped, "node "+node+" was removed from the cluster by an operator before it reported: the request no longer waits for it, and nothing of it ran there")
				changed = true
			} else if st.Detail != detail {
				st.Detail = detail
				changed = true
			}
		}
		return changed, nil, nil
	})
	return err
}

// waitPluginNode updates step st, waiting for the acknowledgement of a
// node-scoped plugin's instance on node: skipped once node is removed
// from the cluster, else its detail says whether node is live. It reports
// whether st changed.
func waitPluginNode(st *Step, node string, members, live []string) bool {
	if !slices.Contains(members, node) {
		st.set(StatusSkipped, "node "+node+" was removed from the cluster by an operator before its instance of the plugin acknowledged: the request no longer waits for it")
		return true
	}
	detail := "waiting for node " + node + "'s instance of the plugin to forget (down: it does when the node is back, or an operator removes it from the cluster)"
	if slices.Contains(live, node) {
		detail = "waiting for node " + node + "'s instance of the plugin to forget (live)"
	}
	if st.Detail == detail {
		return false
	}
	st.Detail = detail
	return true
}

// viewMessage is the outbox message publishing r's view (this node
// received it), so that every node answers its status.
func (s *Service) viewMessage(r *Request) (storage.Message, error) {
	v := *r
	v.Options.SealedTraits, v.Options.SuppressMACs = nil, nil
	b, err := json.Marshal(&v)
	if err != nil {
		return storage.Message{}, err
	}
	return s.cfg.Peers.ViewMessage(r.ID, b), nil
}

// Status returns request id as every node answers it: this node's own
// request, or, for one another node received, that node's last
// published view.
func (s *Service) Status(ctx context.Context, id string) (*Request, error) {
	r, err := s.Get(ctx, id)
	if s.cfg.Peers == nil || (err == nil && r.Origin == "") || (err != nil && !errors.Is(err, ErrNotFound)) {
		return r, err
	}
	b, verr := s.cfg.Peers.View(ctx, id)
	if verr != nil {
		return nil, verr
	}
	if b == nil {
		return nil, ErrNotFound
	}
	return decodeRequest(b)
}

// mergeParts adds to doc the parts of every node that reported one.
func (s *Service) mergeParts(ctx context.Context, r *Request, doc *Export) error {
	for _, node := range doneNodes(r) {
		if _, err := s.addPart(ctx, doc, r.ID, node); err != nil {
			return err
		}
	}
	sortMerged(doc)
	return nil
}

// doneNodes are the other members whose step of r is done, in the order
// of r's steps.
func doneNodes(r *Request) []string {
	var out []string
	for _, st := range r.Steps {
		if node, ok := strings.CutPrefix(st.Name, nodeStepPrefix); ok && st.Status == StatusDone {
			out = append(out, node)
		}
	}
	return out
}

// sharedExport assembles the export of r, a done access or export
// request as its receiving node holds it (that node's request, or its
// view on another node), from the parts in the cluster's bucket: the
// receiving node's (r.ExportNode), then each member's that reported one,
// in the order of r's steps. It is generated at r's completion, so every
// node serves the same document. ErrExportPending: the receiving node's
// part is not in the bucket yet; ErrNotFound: the request's entries were
// purged.
func (s *Service) sharedExport(ctx context.Context, r *Request) (*Export, error) {
	doc := newExport(r)
	if r.CompletedAt != nil {
		doc.GeneratedAt = r.CompletedAt.UTC()
	}
	ok, err := s.addPart(ctx, doc, r.ID, r.ExportNode)
	if err != nil {
		return nil, err
	}
	if !ok {
		// Not published yet, or purged with the request's other entries
		// (retention.requests) while this node still holds the request.
		if v, err := s.cfg.Peers.View(ctx, r.ID); err != nil {
			return nil, err
		} else if v == nil {
			return nil, ErrNotFound
		}
		return nil, ErrExportPending
	}
	if err := s.mergeParts(ctx, r, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// addPart adds node's part of request id's export to doc; false when
// the bucket holds none (one emptied by a later erasure adds nothing).
func (s *Service) addPart(ctx context.Context, doc *Export, id, node string) (bool, error) {
	sealed, err := s.cfg.Peers.Part(ctx, id, node)
	if err != nil || sealed == nil {
		return false, err
	}
	if len(sealed) == 0 { // emptied by a later erasure
		return true, nil
	}
	b, err := s.cfg.Store.OpenSecret(partAAD(id, node), sealed)
	if err != nil {
		return false, err
	}
	var part Export
	err = json.Unmarshal(b, &part)
	clear(b)
	if err != nil {
		return false, fmt.Errorf("privacy: node %s's part: %w", node, err)
	}
	doc.Subjects = append(doc.Subjects, part.Subjects...)
	doc.Events = append(doc.Events, part.Events...)
	doc.EmailEvents = append(doc.EmailEvents, part.EmailEvents...)
	doc.Profiles = append(doc.Profiles, part.Profiles...)
	doc.Segments.Current = append(doc.Segments.Current, part.Segments.Current...)
	doc.Segments.History = append(doc.Segments.History, part.Segments.History...)
	maps.Copy(doc.Consent.Current, part.Consent.Current)
	doc.Consent.History = append(doc.Consent.History, part.Consent.History...)
	maps.Copy(doc.VaultTraits, part.VaultTraits)
	doc.SyncHistory = append(doc.SyncHistory, part.SyncHistory...)
	return true, nil
}

// sortMerged orders a document merged from parts as one node's is.
func sortMerged(doc *Export) {
	slices.Sort(doc.Subjects)
	doc.Subjects = slices.Compact(doc.Subjects)
	slices.SortStableFunc(doc.Events, func(a, b json.RawMessage) int { return cmpInt(eventMs(a), eventMs(b)) })
	slices.Sort(doc.Segments.Current)
	doc.Segments.Current = slices.Compact(doc.Segments.Current)
	slices.SortStableFunc(doc.Consent.History, func(a, b ConsentHistoryDoc) int { return cmpInt(a.AtMs, b.AtMs) })
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// eventMs is an exported event's timestamp (Unix ms), 0 if it has none.
func eventMs(raw json.RawMessage) int64 {
	var ev map[string]json.RawMessage
	if json.Unmarshal(raw, &ev) != nil {
		return 0
	}
	for _, k := range []string{"timestamp_ms", "timestampMs"} {
		if v, ok := ev[k]; ok {
			n, err := strconv.ParseInt(strings.Trim(string(v), `"`), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// forwardAck commits plugin acknowledgement a (of request id's erasure
// event, or of a node's own event: partEventID) for the node waiting for
// it, which sets its plugin step from it; it is committed with request
// id, which this node holds.
func (s *Service) forwardAck(ctx context.Context, id string, a plugins.PrivacyAck) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.update(ctx, id, func(*Request) (bool, []storage.Message, error) {
		return true, []storage.Message{s.cfg.Peers.AckMessage(a.RequestID, ackName(a.Plugin, a.Node), b)}, nil
	})
	return err
}

// forwardUnknownAck commits plugin acknowledgement a of a request this
// node does not hold to the outbox alone, as forwardAck does for a
// request it holds a part of: the node whose plugin step it is reads it
// from VIGIE_REQUESTS.
func (s *Service) forwardUnknownAck(ctx context.Context, a plugins.PrivacyAck) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.cfg.Store.Enqueue(ctx, s.cfg.Peers.AckMessage(a.RequestID, ackName(a.Plugin, a.Node), b))
}

// purgeLoop purges, at once and then every Config.PurgeInterval until ctx
// ends, Peers' entries of the requests past their retention.
func (s *Service) purgeLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.cfg.Peers.Purge(ctx, s.sharedExpired(time.Now())); err != nil && ctx.Err() == nil {
			s.log.Warn("privacy: the cluster's entries of expired requests not all purged; retried at the next purge", "err", err)
		} else if n > 0 {
			s.log.Info("privacy: the cluster's entries of expired requests purged", "requests", n)
		}
		t.Reset(s.cfg.PurgeInterval)
	}
}

// sharedExpired reports, as of now, whether a request's entries in Peers
// have outlived Config.Retention: its view (the receiving node's) says it
// completed before; without a view (entries left by a node after the
// purge, or of a request whose receiving node never published one), its
// id, a ULID, says it was created before.
func (s *Service) sharedExpired(now time.Time) func(id string, view []byte) bool {
	cutoff := now.Add(-s.cfg.Retention)
	return func(id string, view []byte) bool {
		if view == nil {
			u, err := ulid.ParseStrict(id)
			return err == nil && ulid.Time(u.Time()).Before(cutoff)
		}
		var v struct {
			CompletedAt *time.Time `json:"completed_at"`
		}
		return json.Unmarshal(view, &v) == nil && v.CompletedAt != nil && v.CompletedAt.Before(cutoff)
	}
}
