package storage

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
)

// AuditEntry is one line of the audit trail: who did what, when, to which
// fields. It names fields, never their values, and never a subject.
type AuditEntry struct {
	// At is when it happened (millisecond precision).
	At time.Time `json:"at"`
	// Actor is who did it: "token:<id> (<role>)" for an admin API call,
	// "plugin:<name>" for a plugin, "preference_page" for a recipient.
	Actor string `json:"actor"`
	// Action names what was done, e.g. "privacy.request.erase",
	// "contacts.resolve".
	Action string `json:"action"`
	// Site is the site concerned, if any.
	Site string `json:"site,omitempty"`
	// RequestID is the privacy request concerned, if any.
	RequestID string `json:"request_id,omitempty"`
	// Fields are the names of the fields given or changed (e.g. "email").
	Fields []string `json:"fields,omitempty"`
	// Count is how many subjects or items the action concerned, if known.
	Count int `json:"count,omitempty"`
}

// Limits of an audit entry.
const (
	maxAuditText   = 255
	maxAuditFields = 64
	// DefaultAuditRetention is Retention.Audit's default: 3 years, the
	// period the CNIL's own registers keep access traces.
	DefaultAuditRetention = 3 * 365 * 24 * time.Hour
)

// validAudit checks e before it is written.
func validAudit(e *AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("%w: audit entry needs an actor and an action", ErrInvalidRecord)
	}
	texts := append([]string{e.Actor, e.Action, e.Site, e.RequestID}, e.Fields...)
	for _, t := range texts {
		if len(t) > maxAuditText || !utf8.ValidString(t) {
			return fmt.Errorf("%w: audit entry text longer than %d bytes or not UTF-8", ErrInvalidRecord, maxAuditText)
		}
	}
	if len(e.Fields) > maxAuditFields {
		return fmt.Errorf("%w: audit entry names more than %d fields", ErrInvalidRecord, maxAuditFields)
	}
	if e.Count < 0 {
		return fmt.Errorf("%w: negative audit count", ErrInvalidRecord)
	}
	return nil
}

// AppendAudit adds e to the audit trail (At zero: now). The entry expires
// Retention.Audit after At.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	if err := validAudit(&e); err != nil {
		return err
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC().Truncate(time.Millisecond)
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: audit entry: %v", ErrInvalidRecord, err)
	}
	key := auditKey(uint64(e.At.UnixMilli()), s.auditSeq.Add(1))
	exp := e.At.Add(s.cfg.Retention.Audit)
	return s.update(ctx, "audit", nil, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		ent := badger.NewEntry(key, v)
		ent.ExpiresAt = uint64(max(exp.Unix(), 1))
		return txn.SetEntry(ent)
	})
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	// From and To bound At (From included, To excluded); zero: unbounded.
	From, To time.Time
	// Action keeps only entries with this action ("" for all).
	Action string
	// Limit is the most entries returned: 1 to 1000, default 100.
	Limit int
	// After is the Next cursor of the previous page ("" for the first).
	After string
}

// ListAudit returns audit entries oldest first, and the cursor of the next
// page ("" when there is none). A cursor that ListAudit did not return
// gives ErrInvalidKey.
func (s *Store) ListAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, string, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, 1000)
	start := auditKey(0, 0)
	if !q.From.IsZero() && q.From.UnixMilli() > 0 {
		start = auditKey(uint64(q.From.UnixMilli()), 0)
	}
	if q.After != "" {
		b, err := hex.DecodeString(q.After)
		if err != nil || len(b) != timeLen+seqLen {
			return nil, "", fmt.Errorf("%w: audit cursor", ErrInvalidKey)
		}
		after := append([]byte(prefixAudit), b...)
		after = append(after, 0) // the first key after the cursor's
		if string(after) > string(start) {
			start = after
		}
	}
	var end []byte
	if !q.To.IsZero() {
		end = auditKey(uint64(max(q.To.UnixMilli(), 0)), 0)
	}
	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()
	var (
		out  []AuditEntry
		last []byte // key suffix of the last entry in out
		next string
	)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixAudit)
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		for it.Seek(start); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			k := it.Item().Key()
			if end != nil && string(k) >= string(end) {
				break
			}
			if _, _, ok := parseAuditKey(k); !ok {
				continue
			}
			var e AuditEntry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				s.log.Warn("storage: skipping undecodable audit entry")
				continue
			}
			if q.Action != "" && e.Action != q.Action {
				continue
			}
			if len(out) == q.Limit {
				next = hex.EncodeToString(last)
				break
			}
			out = append(out, e)
			last = append(last[:0], k[len(prefixAudit):]...)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: audit: %w", err)
	}
	return out, next, nil
}
