package imports

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/storage"
)

// Source is the event source of imported events (vigiev1.Event.source).
const Source = "import"

// attributesPlugin names the host's attribute updates of imports in the
// profile's idempotency markers: not a valid plugin name, so no plugin
// shares them.
const attributesPlugin = "import:attributes"

// naturalKeyKind is the blind-index kind of natural keys: their dedup key
// is a keyed MAC under the blind-index key, which key rotation does not
// change (a pseudonym would), and which no hit's messageId can collide
// with (those are pseudonyms, without the prefix).
const (
	naturalKeyKind   = "import"
	dedupPrefix      = "import:"
	maxResolveCache  = 10_000
	maxSourceLen     = 64
	retryMaxInterval = 10 * time.Second
)

// decodeRecord decodes a stored job.
func decodeRecord(v []byte) (*record, error) {
	rec := &record{}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("imports: job: %w", err)
	}
	return rec, nil
}

// load reads job id.
func (s *Service) load(ctx context.Context, id string) (*record, error) {
	v, err := s.cfg.Store.ImportJob(ctx, id)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidKey) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return decodeRecord(v)
}

// put stores rec with per-row errors and an idempotency record.
func (s *Service) put(ctx context.Context, rec *record, errs []storage.ImportRowError, idem *[2][]byte) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	w := storage.ImportWrite{Job: v, Errors: errs}
	if idem != nil {
		w.IdemKey, w.IdemValue = idem[0], idem[1]
	}
	if s.cfg.Shared != nil {
		m, err := s.cfg.Shared.Message(rec.view())
		if err != nil {
			return err
		}
		w.Msgs = []storage.Message{m}
	}
	return s.cfg.Store.PutImportJob(ctx, rec.ID, w)
}

// options are the checks of a mapping on this server.
func (s *Service) options(fileName string) Options {
	return Options{Purposes: s.cfg.Purposes, ProfilePurposes: s.cfg.ProfilePurposes, MaxRetention: s.cfg.Retention, FileName: fileName}
}

// newSource opens the rows of f for p from offset.
func newSource(f io.ReadSeeker, p *plan, offset int64) (rowSource, error) {
	if p.format == FormatNDJSON {
		return newNDJSONSource(f, p, offset)
	}
	return newCSVSource(f, p, offset)
}

// run is one job being run.
type run struct {
	s      *Service
	rec    *record
	p      *plan
	site   *pipeline.Site
	src    rowSource
	vals   []string
	r      row
	reader ledger.Reader
	cache  map[string]resolved
	start  time.Time // of the current stretch of RunMs
	// resuming: the first batch may hold rows the run that stopped
	// appended (rec.Committing): their duplicates are accepted rows.
	resuming bool
	closeFn  func() error
	// nextRow is the number of rows the read stage has read.
	nextRow uint64
	// waiting is what the job waits for ("" when nothing), for the job's
	// progress: both stages set it.
	waiting atomic.Pointer[string]
}

// close closes the job's file.
func (j *run) close() {
	if j.closeFn != nil {
		_ = j.closeFn()
	}
}

// resolved is a subject resolved from an identifier.
type resolved struct {
	subject string
	links   []string
}

// tally counts one batch before it is committed.
type tally struct {
	rows    Rows
	skipped map[string]int64
	failed  map[string]int64
	errs    []storage.ImportRowError
}

// runJob runs job id until it ends, fails or ctx is done. wctx is the
// worker's context (jctx is also done when the job is canceled).
func (s *Service) runJob(jctx, wctx context.Context, id string) {
	rec, err := s.load(wctx, id)
	if err != nil {
		s.log.Warn("import job not loaded", "job", id, "err", err)
		return
	}
	if rec.finished() {
		return
	}
	j := &run{s: s, rec: rec, start: time.Now(), resuming: rec.Committing, cache: map[string]resolved{},
		reader: s.cfg.Ledger.Reader(context.WithoutCancel(jctx))}
	if msg := j.open(); msg != "" {
		s.end(wctx, rec, StatusFailed, msg)
		return
	}
	defer j.close()
	now := time.Now().UTC()
	if rec.StartedAt == nil {
		rec.StartedAt = &now
	}
	rec.Status = StatusRunning
	if err := j.retry(jctx, func() error { return s.put(jctx, rec, nil, nil) }); err != nil {
		j.stopped(wctx, err)
		return
	}
	// The next batch is read and prepared while the last one is committed.
	var pending chan error
	var committed error
	wait := func() error {
		if pending != nil {
			committed, pending = <-pending, nil
		}
		return committed
	}
	defer func() { _ = wait() }()
	j.nextRow = rec.Row
	for {
		if jctx.Err() != nil {
			_ = wait()
			j.stopped(wctx, jctx.Err())
			return
		}
		if err := j.throttle(jctx); err != nil {
			_ = wait()
			j.stopped(wctx, err)
			return
		}
		b, err := j.prepareBatch(jctx)
		if werr := wait(); werr != nil {
			j.stopped(wctx, werr)
			return
		}
		switch {
		case err != nil:
			j.stopped(wctx, err)
			return
		case b.msg != "":
			// The file fails here: the rows read before it are kept.
			if err := j.commit(jctx, b); err != nil {
				j.stopped(wctx, err)
				return
			}
			s.end(wctx, rec, StatusFailed, b.msg)
			return
		}
		pending = make(chan error, 1)
		go func(b *batch) { pending <- j.commit(jctx, b) }(b)
		if b.eof {
			if err := wait(); err != nil {
				j.stopped(wctx, err)
				return
			}
			s.end(wctx, rec, StatusDone, "")
			return
		}
	}
}

// open compiles the job's mapping and opens its file; a problem is the
// job's failure message.
func (j *run) open() string {
	s, rec := j.s, j.rec
	p, err := compile(rec.Mapping, s.options(""))
	if err != nil {
		return "the mapping is no longer valid with this configuration: " + err.Error()
	}
	p.format = rec.Format
	j.p = p
	if j.site = s.cfg.Sites[rec.Site]; j.site == nil {
		return "the site is no longer configured"
	}
	f, err := os.Open(s.dataPath(rec.ID))
	if err != nil {
		return "the uploaded file is gone; post it again (rows already imported are skipped)"
	}
	src, err := newSource(f, p, rec.Offset)
	if err != nil {
		_ = f.Close()
		var me *MappingError
		if errors.As(err, &me) {
			return me.Error()
		}
		return "the file cannot be read"
	}
	j.src, j.vals = src, make([]string, len(p.columns))
	j.closeFn = f.Close
	return ""
}

// end ends rec with status (and msg for a failure) and removes its file.
func (s *Service) end(ctx context.Context, rec *record, status, msg string) {
	now := time.Now().UTC()
	rec.Status, rec.Error, rec.FinishedAt, rec.Committing = status, msg, &now, false
	rec.Progress.Waiting = ""
	if err := s.put(ctx, rec, nil, nil); err != nil {
		s.log.Warn("import job end not recorded", "job", rec.ID, "err", err)
	}
	_ = os.Remove(s.dataPath(rec.ID))
	s.log.Info("import job ended", "job", rec.ID, "status", status, "dry_run", rec.DryRun,
		"read", rec.Rows.Read, "accepted", rec.Rows.Accepted, "skipped", rec.Rows.Skipped, "failed", rec.Rows.Failed)
}

// stopped handles a run that stopped on err: canceled by Cancel, stopped
// by Stop (it resumes at the next start), or a storage failure.
func (j *run) stopped(ctx context.Context, err error) {
	switch {
	case j.s.cancelRequested(j.rec.ID):
		j.s.end(ctx, j.rec, StatusCanceled, "")
	case ctx.Err() != nil:
		// Vigie is stopping: the job resumes from its last batch.
	default:
		j.s.log.Error("import job failed", "job", j.rec.ID, "err", err)
		j.s.end(ctx, j.rec, StatusFailed, fmt.Sprintf("storage failed after row %d; post the file again (rows already imported are skipped)", j.rec.Row))
	}
}

// transient reports an error the job waits out.
func transient(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutboxFull):
		return "outbox"
	case errors.Is(err, storage.ErrDiskFull):
		return "disk_full"
	}
	return ""
}

// retry calls fn until it succeeds, fails for good or ctx is done, waiting
// out a full outbox or disk.
func (j *run) retry(ctx context.Context, fn func() error) error {
	delay := 250 * time.Millisecond
	for {
		err := fn()
		why := transient(err)
		j.waiting.Store(&why)
		if why == "" {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMaxInterval)
	}
}

// throttle waits while the outbox is above the high-water mark: live
// traffic keeps room in it.
func (j *run) throttle(ctx context.Context) error {
	for j.s.cfg.Store.OutboxLen() > j.s.cfg.OutboxHighWater {
		why := "outbox"
		j.waiting.Store(&why)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// batch is a batch of rows read and prepared, waiting for its commit.
type batch struct {
	t        tally
	recs     []storage.Record
	outcomes []storage.SegmentOutcome
	row      uint64 // rows read up to its end
	offset   int64  // file offset of its end
	eof      bool   // the file ends with it
	msg      string // the job fails here (the file)
}

// prepareBatch reads and prepares up to BatchSize rows (consent proofs
// are recorded as they are met); err is a storage failure or ctx done.
func (j *run) prepareBatch(ctx context.Context) (*batch, error) {
	s := j.s
	b := &batch{t: tally{skipped: map[string]int64{}, failed: map[string]int64{}}}
	t := &b.t
	now := time.Now()
	for t.rows.Read < int64(s.cfg.BatchSize) {
		reason, field, err := j.src.next(j.vals)
		if errors.Is(err, io.EOF) {
			b.eof = true
			break
		}
		if errors.Is(err, errRowTooLarge) {
			b.msg = fmt.Sprintf("row %d is larger than 1 MiB; the rows before it were imported", j.nextRow+1)
			b.row, b.offset = j.nextRow, j.src.offset()
			return b, nil
		}
		if err != nil {
			b.msg = fmt.Sprintf("the file cannot be read after row %d", j.nextRow)
			b.row, b.offset = j.nextRow, j.src.offset()
			return b, nil
		}
		j.nextRow++
		row := j.nextRow
		t.rows.Read++
		if reason != "" {
			t.add(row, failed(reason, field), j.p)
			continue
		}
		if e := j.p.build(&j.r, j.vals, now, j.configured); e != nil {
			t.add(row, e, j.p)
			continue
		}
		sr, o, e, err := j.prepare(ctx, row, now)
		if err != nil {
			return nil, err
		}
		if e != nil {
			t.add(row, e, j.p)
			continue
		}
		if j.rec.DryRun {
			t.rows.Accepted++
			continue
		}
		b.recs = append(b.recs, sr)
		if o != nil {
			b.outcomes = append(b.outcomes, *o)
		}
	}
	b.row, b.offset = j.nextRow, j.src.offset()
	return b, nil
}

// commit sets the batch's attributes, appends its events and commits the
// job's position, counts and errors after it.
func (j *run) commit(ctx context.Context, b *batch) error {
	s, rec, t := j.s, j.rec, &b.t
	if len(b.outcomes) > 0 {
		err := j.retry(ctx, func() error {
			res, err := s.cfg.Store.ApplySegments(ctx, b.outcomes)
			for _, r := range res {
				if r.Err != nil && err == nil && transient(r.Err) != "" {
					err = r.Err
				}
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if len(b.recs) > 0 {
		rec.Committing = true
		if err := j.retry(ctx, func() error { return j.put(ctx, nil) }); err != nil {
			return err
		}
		var dups []bool
		if err := j.retry(ctx, func() error {
			var err error
			dups, err = s.cfg.Store.Append(ctx, b.recs)
			return err
		}); err != nil {
			return err
		}
		for _, d := range dups {
			if d && !j.resuming {
				t.rows.Skipped++
				t.skipped[reasonDuplicate]++
			} else {
				t.rows.Accepted++
			}
		}
	}
	j.resuming = false
	// The checkpoint: counts, errors and offset after the batch.
	rec.Committing = false
	rec.Row, rec.Offset = b.row, b.offset
	rec.Rows.Read += t.rows.Read
	rec.Rows.Accepted += t.rows.Accepted
	rec.Rows.Skipped += t.rows.Skipped
	rec.Rows.Failed += t.rows.Failed
	rec.SkippedByReason = merge(rec.SkippedByReason, t.skipped)
	rec.FailedByReason = merge(rec.FailedByReason, t.failed)
	errs := t.errs
	if room := MaxErrors - rec.Errors.Stored; int64(len(errs)) > room {
		errs, rec.Errors.Truncated = errs[:max(room, 0)], true
	}
	rec.Errors.Stored += int64(len(errs))
	rec.RunMs += time.Since(j.start).Milliseconds()
	j.start = time.Now()
	return j.retry(ctx, func() error { return j.put(ctx, errs) })
}

// put stores the job as the commit stage sees it, with what it waits for.
func (j *run) put(ctx context.Context, errs []storage.ImportRowError) error {
	if w := j.waiting.Load(); w != nil {
		j.rec.Progress.Waiting = *w
	}
	return j.s.put(ctx, j.rec, errs, nil)
}

// merge adds b's counts into a.
func merge(a, b map[string]int64) map[string]int64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = map[string]int64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// add counts a failed or skipped row and keeps its error.
func (t *tally) add(row uint64, e *rowErr, p *plan) {
	if e.failed {
		t.rows.Failed++
		t.failed[e.reason]++
	} else {
		t.rows.Skipped++
		t.skipped[e.reason]++
	}
	re := RowError{Row: row, Field: e.field, Reason: e.reason, Skipped: !e.failed, Message: reasonText[e.reason]}
	if i := slices.IndexFunc(p.colPaths, func(c string) bool { return c == e.field || c == e.field+".column" }); i >= 0 && e.field != "" {
		re.Column = p.columns[i]
	}
	v, _ := json.Marshal(re)
	t.errs = append(t.errs, storage.ImportRowError{Row: row, Value: v})
}

// configured reports whether name is a configured purpose (consent lists).
func (j *run) configured(name string) bool {
	if len(j.s.cfg.Purposes) == 0 {
		_, err := consent.ParseSet(name)
		return err == nil
	}
	return slices.Contains(j.s.cfg.Purposes, name)
}

// prepare takes the built row j.r (row number row) through suppression,
// identity, retention, lawful basis and the pipeline. It returns the
// record to append and the attributes to set, or why the row is kept out;
// err is a storage failure.
func (j *run) prepare(ctx context.Context, row uint64, now time.Time) (storage.Record, *storage.SegmentOutcome, *rowErr, error) {
	s, p, r, site := j.s, j.p, &j.r, j.site
	siteID := site.ID()
	if s.cfg.Suppressor != nil && s.cfg.Suppressor.Suppressed(siteID, j.probe()) {
		return storage.Record{}, nil, skipped(reasonSuppressed, "identity.column"), nil
	}
	who, err := j.resolve(ctx)
	if err != nil {
		return storage.Record{}, nil, nil, err
	}
	ret := s.cfg.Retention
	if p.retention > 0 {
		ret = p.retention
	}
	var ttl time.Duration
	if ret > 0 {
		if ttl = ret - now.Sub(r.at); ttl < time.Second {
			return storage.Record{}, nil, skipped(reasonPastRetention, ""), nil
		}
	}
	// The ledger is read whatever ctx: a read that fails is a decision
	// without it, which no row may get.
	entry := s.cfg.Ledger.Get(context.WithoutCancel(ctx), siteID, who.subject)
	policy := site.Policy()
	var sigs []consent.Signal
	var record *consent.Decision
	switch {
	case r.contract:
		sigs = append(sigs, consent.Signal{Source: Source, Granted: p.purposes})
		if entry.Found {
			sigs = append(sigs, consent.Signal{Source: consent.SourceLedger, Granted: entry.Granted, Denied: entry.Denied})
		}
	case now.Sub(r.consentAt) > storage.ConsentTTL:
		return storage.Record{}, nil, skipped(reasonConsentExpired, "lawful_basis.date_column"), nil
	case entry.Found && !entry.At.Before(r.consentAt):
		// The ledger's choice is newer than the file's: it decides.
		sigs = append(sigs, consent.Signal{Source: consent.SourceLedger, Granted: entry.Granted, Denied: entry.Denied})
	default:
		// The row's choice is the newest: it speaks for the purposes it
		// names, the others keep the ledger's state.
		merged := r.granted
		if entry.Found {
			merged = consent.NewSet(append(setPurposes(entry.Granted), setPurposes(r.granted)...)...)
		}
		merged = consent.NewSet(slices.DeleteFunc(setPurposes(merged), func(q consent.Purpose) bool { return r.denied.Has(q) })...)
		sig := consent.Signal{Source: Source, Granted: merged, Denied: r.denied}
		sigs = append(sigs, sig)
		d := consent.Decide(policy, sig)
		record = &d
	}
	if record != nil && !j.rec.DryRun {
		proof := ledger.Proof{Source: j.proofSource(), Hash: hex.EncodeToString(r.proof[:]), At: r.consentAt}
		err := j.retry(ctx, func() error {
			return s.cfg.Ledger.RecordWithProof(ctx, siteID, who.subject, *record, proof)
		})
		if err != nil {
			return storage.Record{}, nil, nil, err
		}
	}
	d := consent.Limit(policy, consent.Decide(policy, sigs...), entry.Objected, entry.Restricted)
	if d.Outcome != consent.Pseudonymous || !d.Granted.HasAll(p.purposes) {
		switch {
		case entry.Restricted:
			return storage.Record{}, nil, skipped(reasonRestricted, ""), nil
		case entry.Objected.HasAny(p.purposes):
			return storage.Record{}, nil, skipped(reasonObjected, ""), nil
		case d.Granted.HasAll(p.purposes):
			return storage.Record{}, nil, skipped(reasonNotPseudonymous, ""), nil
		}
		return storage.Record{}, nil, skipped(reasonConsentDenied, "lawful_basis.column"), nil
	}
	req := pipeline.Request{ReceivedAt: now, Source: Source, Signals: sigs, Explicit: true,
		Ledger: j.reader, Subject: who.subject}
	res := s.cfg.Pipeline.Process(site, &r.msg, &req)
	if res.Outcome != pipeline.Stored {
		return storage.Record{}, nil, skipped(reasonNotPseudonymous, ""), nil
	}
	sr := res.Record
	sr.TTL = ttl
	mac := s.cfg.Blind.MAC(siteID, naturalKeyKind, hex.EncodeToString(r.key), "")
	sr.Dedup = hex.AppendEncode([]byte(dedupPrefix), mac)
	sr.KeepDedup = true
	if p.kind == KindEmail {
		if e, ok := s.cfg.Blind.Entry(siteID, blind.Email, r.identity, ""); ok && !slices.ContainsFunc(sr.Index, func(x storage.IndexEntry) bool {
			return x.Kind == e.Kind && string(x.MAC) == string(e.MAC)
		}) {
			sr.Index = append(sr.Index, e)
		}
		for _, l := range who.links {
			if !slices.Contains(sr.Links, l) {
				sr.Links = append(sr.Links, l)
			}
		}
	}
	var o *storage.SegmentOutcome
	if len(r.attrs) > 0 {
		var c pseudonymize.Counts
		attrs, err := site.ScrubObject(r.attrs, &c)
		if err == nil && len(attrs) > 2 {
			o = &storage.SegmentOutcome{Plugin: attributesPlugin, Site: siteID, Subject: who.subject,
				EventID: fmt.Sprintf("%s:%d", j.rec.ID, row), Attributes: attrs, AtMs: r.at.UnixMilli(),
				CreatePurposes: d.Granted.Names()}
		}
	}
	return sr, o, nil, nil
}

// probe is the message the suppression set is asked about: the row's
// identifier as a user id, and an e-mail as the identify trait it would be.
func (j *run) probe() *collect.Message {
	m := &collect.Message{Type: j.p.typ}
	switch j.p.kind {
	case KindUserID:
		m.UserID = j.r.identity
	case KindEmail:
		m.UserID = j.r.identity
		t, err := jsontext.AppendQuote([]byte(`{"email":`), j.r.identity)
		if err == nil {
			m.Traits = append(t, '}')
		}
	}
	return m
}

// resolve finds the subject of the row's identity: a user id's pseudonym;
// for an e-mail, the subject the blind index links it to (one the site
// identified rather than one an earlier import made, when there are
// several; linked to that one), else the pseudonym the address would have
// as a user id.
func (j *run) resolve(ctx context.Context) (resolved, error) {
	id := j.r.identity
	if j.p.kind == KindUserID {
		return resolved{subject: j.site.UserPseudonym(id)}, nil
	}
	if v, ok := j.cache[id]; ok {
		return v, nil
	}
	siteID := j.site.ID()
	own := j.site.UserPseudonym(id)
	out := resolved{subject: own}
	if e, ok := j.s.cfg.Blind.Entry(siteID, blind.Email, id, ""); ok {
		subs, err := j.s.cfg.Store.BlindLookup(ctx, siteID, e)
		if err != nil {
			return resolved{}, err
		}
		slices.Sort(subs)
		for _, sub := range subs {
			if sub != own {
				out.subject = sub
				if slices.Contains(subs, own) {
					out.links = []string{own}
				}
				break
			}
		}
	}
	if len(j.cache) >= maxResolveCache {
		clear(j.cache)
	}
	j.cache[id] = out
	return out, nil
}

// proofSource is the ledger source of the row's consent: import:<job>,
// then the row's source, scrubbed and cut to 64 characters of a plain
// set.
func (j *run) proofSource() string {
	src := Source + ":" + j.rec.ID
	v := pseudonymize.ScrubText(j.r.source, nil)
	var b []byte
	for i := 0; i < len(v) && len(b) < maxSourceLen; i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '/':
			b = append(b, c)
		case c == ' ' || c == ':':
			b = append(b, '_')
		}
	}
	if len(b) > 0 {
		src += ":" + string(b)
	}
	return src
}
