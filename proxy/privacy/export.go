package privacy

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"slices"
	"time"

	"github.com/vigie-dev/vigie/proxy/apijson"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Export is the document of everything Vigie holds about one person on one
// site (GDPR Art. 15 and 20): exactly what was stored, after consent,
// pseudonymization and scrubbing, plus the vaulted traits decrypted.
type Export struct {
	// RequestID, Site and GeneratedAt identify the document.
	RequestID   string    `json:"request_id"`
	Site        string    `json:"site"`
	GeneratedAt time.Time `json:"generated_at"`
	// IdentifierKind is what the person was found by.
	IdentifierKind string `json:"identifier_kind"`
	// Subjects are the pseudonyms Vigie knows the person by.
	Subjects []string `json:"subjects"`
	// Events are the stored events, oldest first, as stored.
	Events []json.RawMessage `json:"events"`
	// EmailEvents are the e-mail opens and clicks among them.
	EmailEvents []json.RawMessage `json:"email_events"`
	// Profiles are the profiles (counters, score, segments).
	Profiles []ProfileDoc `json:"profiles"`
	// Segments are the current memberships and their recent history.
	Segments SegmentsDoc `json:"segments"`
	// Consent is the current choice (with objection and restriction) and
	// every recorded choice with its proof.
	Consent ConsentDoc `json:"consent"`
	// VaultTraits are the personal traits kept encrypted, by pseudonym.
	VaultTraits map[string]json.RawMessage `json:"vault_traits"`
	// SyncHistory is what each plugin was given, by pseudonym.
	SyncHistory []SyncDoc `json:"sync_history"`
}

// ProfileDoc is one profile.
type ProfileDoc struct {
	Subject string          `json:"subject"`
	Profile json.RawMessage `json:"profile"`
}

// SegmentsDoc is the segment memberships.
type SegmentsDoc struct {
	Current []string          `json:"current"`
	History []json.RawMessage `json:"history"`
}

// ConsentDoc is the consent of the person's subjects.
type ConsentDoc struct {
	Current map[string]storage.ConsentEntry `json:"current"`
	History []ConsentHistoryDoc             `json:"history"`
}

// ConsentHistoryDoc is one recorded choice of one subject.
type ConsentHistoryDoc struct {
	Subject string `json:"subject"`
	storage.ConsentEntry
	At time.Time `json:"at"`
}

// SyncDoc is one thing a plugin was given.
type SyncDoc struct {
	Subject string `json:"subject"`
	storage.SyncRecord
	At time.Time `json:"at"`
}

// asJSON is m as Vigie's JSON APIs show it (apijson), or null.
func asJSON(m proto.Message) json.RawMessage {
	j, err := apijson.Marshal(m)
	if err != nil {
		return json.RawMessage("null")
	}
	return j
}

// Export builds the document of request r (an access or export request
// received by this node) from what the store holds now and, in cluster
// mode, the part every other node reported. Once such a request is done,
// every node serves instead the document assembled from the parts
// (sharedExport).
func (s *Service) Export(ctx context.Context, r *Request) (*Export, error) {
	doc, err := s.localExport(ctx, r)
	if err != nil || s.cfg.Peers == nil || r.Origin != "" {
		return doc, err
	}
	if err := s.mergeParts(ctx, r, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// newExport is the empty document of r, generated now.
func newExport(r *Request) *Export {
	return &Export{RequestID: r.ID, Site: r.Site, GeneratedAt: time.Now().UTC(), IdentifierKind: r.IdentifierKind,
		Subjects: []string{}, Events: []json.RawMessage{}, EmailEvents: []json.RawMessage{},
		Profiles: []ProfileDoc{}, Segments: SegmentsDoc{Current: []string{}, History: []json.RawMessage{}},
		Consent:     ConsentDoc{Current: map[string]storage.ConsentEntry{}, History: []ConsentHistoryDoc{}},
		VaultTraits: map[string]json.RawMessage{}, SyncHistory: []SyncDoc{}}
}

// localExport builds the document of r from this node's store.
func (s *Service) localExport(ctx context.Context, r *Request) (*Export, error) {
	doc := newExport(r)
	doc.Subjects = append(doc.Subjects, r.Subjects...)
	type timed struct {
		ms  int64
		raw json.RawMessage
	}
	var evs []timed
	for _, subj := range r.Subjects {
		raws, err := s.cfg.Store.SubjectEvents(ctx, subj)
		if err != nil {
			return nil, err
		}
		for _, b := range raws {
			ev := &vigiev1.Event{}
			if proto.Unmarshal(b, ev) != nil || ev.GetSite() != r.Site {
				continue
			}
			j := asJSON(ev)
			evs = append(evs, timed{ev.GetTimestampMs(), j})
			if ev.GetEmail() != nil {
				doc.EmailEvents = append(doc.EmailEvents, j)
			}
		}
		p, err := s.cfg.Store.Profile(ctx, r.Site, subj)
		switch {
		case err == nil:
			pp := p.Proto(time.Now().UnixMilli())
			pp.Attributes = nil
			j := asJSON(pp)
			var obj map[string]json.RawMessage
			if json.Unmarshal(j, &obj) == nil {
				obj["purposes"], _ = json.Marshal(p.Purposes)
				if len(p.Attributes) > 0 {
					obj["attributes"] = json.RawMessage(p.Attributes)
				}
				j, _ = json.Marshal(obj)
			}
			doc.Profiles = append(doc.Profiles, ProfileDoc{Subject: subj, Profile: j})
			doc.Segments.Current = append(doc.Segments.Current, p.Segments...)
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
		changes, err := s.cfg.Store.SubjectSegmentLog(ctx, r.Site, subj)
		if err != nil {
			return nil, err
		}
		for _, c := range changes {
			doc.Segments.History = append(doc.Segments.History, asJSON(c))
		}
		if e, err := s.cfg.Store.Consent(ctx, r.Site, subj); err == nil {
			doc.Consent.Current[subj] = e
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		hist, err := s.cfg.Store.ConsentHistory(ctx, r.Site, subj)
		if err != nil {
			return nil, err
		}
		for _, h := range hist {
			doc.Consent.History = append(doc.Consent.History, ConsentHistoryDoc{Subject: subj, ConsentEntry: h, At: time.UnixMilli(h.AtMs).UTC()})
		}
		traits, err := s.cfg.Store.VaultTraits(subj, r.Site)
		switch {
		case err == nil && json.Valid(traits):
			doc.VaultTraits[subj] = traits
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
		syncs, err := s.cfg.Store.SyncHistory(ctx, r.Site, subj)
		if err != nil {
			return nil, err
		}
		for _, sr := range syncs {
			doc.SyncHistory = append(doc.SyncHistory, SyncDoc{Subject: subj, SyncRecord: sr, At: time.UnixMilli(sr.AtMs).UTC()})
		}
	}
	slices.SortStableFunc(evs, func(a, b timed) int { return int(a.ms - b.ms) })
	for _, e := range evs {
		doc.Events = append(doc.Events, e.raw)
	}
	slices.Sort(doc.Segments.Current)
	doc.Segments.Current = slices.Compact(doc.Segments.Current)
	slices.SortStableFunc(doc.Consent.History, func(a, b ConsentHistoryDoc) int { return int(a.AtMs - b.AtMs) })
	return doc, nil
}

//go:embed export.html
var exportFS embed.FS

var exportTmpl = template.Must(template.New("export.html").Funcs(template.FuncMap{
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return ""
		}
		return string(b)
	},
	"pretty": func(raw json.RawMessage) string {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return string(raw)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	},
}).ParseFS(exportFS, "export.html"))

// WriteHTML writes the readable rendering of doc.
func WriteHTML(w io.Writer, doc *Export) error {
	return exportTmpl.Execute(w, doc)
}
