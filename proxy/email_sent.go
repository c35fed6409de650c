package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
)

// When the rewrite API prepares a campaign per recipient with a
// message_type, it records an exposure per recipient for the response
// model: an "Email Sent" event (properties message_type, campaign), and
// for the recipients a holdout keeps out of the campaign an "Email Sent"
// with holdout: true (the "no message" arm). Only recipients whose
// consent ledger grants marketing (not objected to, not restricted) get
// an event, identified by their user id's pseudonym as their opens and
// clicks are; the others get nothing. The events go through the pipeline
// and storage.Append (so the outbox) like every hit, with a messageId
// derived from the site, campaign and recipient: a retried request adds
// nothing within the dedup window.

// recipientGrants is what a recipient's consent ledger entry grants once
// its objection (GDPR Art. 21) and restriction (Art. 18) apply, as the
// pipeline applies them to every event (consent.Limit): an e-mail to a
// person who objected to marketing is neither tracked nor modelled.
func (s *Server) recipientGrants(ctx context.Context, st *site, recipient string) consent.Set {
	e := s.ledger.Get(ctx, st.cfg.ID, recipient)
	if !e.Found {
		return consent.Set{}
	}
	d := consent.Limit(st.pipe.Policy(), consent.Decision{Outcome: consent.Pseudonymous, Granted: e.Granted}, e.Objected, e.Restricted)
	if d.Outcome != consent.Pseudonymous {
		return consent.Set{}
	}
	return d.Granted
}

// maxHoldout bounds the share of recipients a holdout keeps out.
const maxHoldout = 0.5

// sendPlan is what a rewrite request records for the response model.
type sendPlan struct {
	site, campaign, messageType string
	holdout                     float64
	at                          time.Time
	// sent and heldOut are the recipients' user ids and pseudonyms, in
	// request order.
	sent, heldOut [][2]string
}

// newSendPlan validates the rewrite request's message_type and holdout;
// nil (and ok) when the request records nothing. A problem is answered
// 400 and ok is false.
func (s *Server) newSendPlan(w http.ResponseWriter, st *site, req *rewriteRequest, at time.Time) (plan *sendPlan, ok bool) {
	bad := func(field, msg string) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_request", Error: field + ": " + msg, Field: field})
	}
	if req.MessageType == "" {
		if req.Holdout != nil {
			bad("holdout", "needs a message_type: the holdout is the no-message arm of that message type")
			return nil, false
		}
		return nil, true
	}
	if req.MergeTag != "" {
		bad("message_type", "goes with recipients: with a merge tag the ESP sends, and reports each Email Sent through /v1/track (see README, Which message works on whom)")
		return nil, false
	}
	if !validMessageType(req.MessageType) {
		bad("message_type", "must be 1-64 of a-z, 0-9, '-' and '_'")
		return nil, false
	}
	if s.reactions != nil && !slices.Contains(s.reactions.MessageTypes(), req.MessageType) {
		bad("message_type", "not one of the response plugin's message types ("+strings.Join(s.reactions.MessageTypes(), ", ")+")")
		return nil, false
	}
	plan = &sendPlan{site: st.cfg.ID, campaign: req.Campaign, messageType: req.MessageType, at: at}
	if req.Holdout != nil {
		if h := *req.Holdout; !(h >= 0 && h <= maxHoldout) {
			bad("holdout", fmt.Sprintf("must be a share from 0 to %g (e.g. 0.1 for 10%% of the recipients)", maxHoldout))
			return nil, false
		}
		plan.holdout = *req.Holdout
	}
	return plan, true
}

// validMessageType reports whether s is a message type name (the response
// plugin's rule).
func validMessageType(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// holdsOut reports whether the holdout keeps recipient (its user id and
// pseudonym) out of the campaign, and notes it: the split is a hash of
// the site, campaign and pseudonym, so a retried request gives the same.
func (p *sendPlan) holdsOut(userID, pseudonym string) bool {
	if p == nil || p.holdout <= 0 {
		return false
	}
	h := sha256.Sum256([]byte("vigie holdout v1\x00" + p.site + "\x00" + p.campaign + "\x00" + pseudonym))
	if float64(binary.BigEndian.Uint64(h[:8])>>11)/(1<<53) >= p.holdout {
		return false
	}
	p.heldOut = append(p.heldOut, [2]string{userID, pseudonym})
	return true
}

// sends notes a recipient the campaign goes to.
func (p *sendPlan) sends(userID, pseudonym string) {
	if p != nil {
		p.sent = append(p.sent, [2]string{userID, pseudonym})
	}
}

// recordSends stores the plan's Email Sent events and adds to answer the
// recipients held out and the counts recorded. On a storage failure it
// answers 503 (the messages are not handed out: their exposures would be
// missing) and returns false.
func (s *Server) recordSends(ctx context.Context, w http.ResponseWriter, st *site, p *sendPlan, answer map[string]any) bool {
	if p == nil {
		return true
	}
	held := make([]string, len(p.heldOut))
	for i, r := range p.heldOut {
		held[i] = r[0]
	}
	answer["message_type"], answer["holdout"], answer["held_out"] = p.messageType, p.holdout, held
	var recs []storage.Record
	var kinds []bool // holdout, per record
	for _, group := range []struct {
		list    [][2]string
		holdout bool
	}{{p.sent, false}, {p.heldOut, true}} {
		for _, r := range group.list {
			rec, ok, err := s.emailSentRecord(ctx, st, p, r[0], r[1], group.holdout)
			if err != nil {
				s.log.Error("email: Email Sent event not made", "site", st.cfg.ID, "error", err)
				writeError(w, http.StatusInternalServerError, "internal", "the Email Sent events could not be made", nil)
				return false
			}
			if ok {
				recs, kinds = append(recs, rec), append(kinds, group.holdout)
			}
		}
	}
	recorded := map[string]int{"email_sent": 0, "holdout": 0}
	if len(recs) > 0 {
		dups, err := s.appendShared(ctx, recs)
		switch {
		case errors.Is(err, cluster.ErrUnavailable), errors.Is(err, cluster.ErrBusy):
			writeError(w, http.StatusServiceUnavailable, "dedup_unavailable", "the Email Sent events could not be checked for duplicates; retry later", nil)
			return false
		case errors.Is(err, storage.ErrDiskFull):
			writeError(w, http.StatusServiceUnavailable, "disk_full", "the server is short of disk space; retry later", nil)
			return false
		case err != nil:
			s.log.Error("email: Email Sent events not stored", "site", st.cfg.ID, "error", err)
			writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the Email Sent events could not be stored; retry later", nil)
			return false
		}
		for i, dup := range dups {
			switch {
			case dup:
			case kinds[i]:
				recorded["holdout"]++
			default:
				recorded["email_sent"]++
			}
		}
	}
	answer["recorded"] = recorded
	return true
}

// emailSentRecord makes the Email Sent event of one recipient; ok is false
// when the recipient's consent does not grant marketing (nothing is then
// recorded).
func (s *Server) emailSentRecord(ctx context.Context, st *site, p *sendPlan, userID, pseudonym string, holdout bool) (storage.Record, bool, error) {
	if !s.recipientGrants(ctx, st, pseudonym).Has(consent.Marketing) {
		return storage.Record{}, false, nil
	}
	props := map[string]any{"message_type": p.messageType, "campaign": p.campaign}
	if holdout {
		props["holdout"] = true
	}
	raw, err := json.Marshal(props)
	if err != nil {
		return storage.Record{}, false, err
	}
	m := &collect.Message{
		Type: "track", Event: response.EventEmailSent, UserID: userID, Properties: raw, Timestamp: p.at,
		MessageID: "vigie-email-sent\x00" + p.campaign + "\x00" + userID,
	}
	res := s.pipe.Process(st.pipe, m, &pipeline.Request{ReceivedAt: time.Now(), Source: "email", Ledger: s.ledger.Reader(ctx)})
	if res.Outcome != pipeline.Stored || res.Record.Subject == "" {
		return storage.Record{}, false, nil
	}
	return res.Record, true, nil
}
