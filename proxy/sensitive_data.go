package proxy

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/sensitive"
	"github.com/vigie-dev/vigie/storage"
)

// sensitiveFlushInterval is how often the detections counted in memory
// are added to Badger (and at shutdown, and before a report is read).
const sensitiveFlushInterval = 10 * time.Second

// sensitiveTally counts special-category detections in memory between
// flushes: per site, UTC day, category and layer, with at most
// storage.MaxSensitiveExamples examples each. Detections are rare; a
// mutex is enough.
type sensitiveTally struct {
	mu     sync.Mutex
	counts map[tallyKey]*storage.SensitiveCount
	// flushMu serializes flushes (the flusher and reports).
	flushMu sync.Mutex
	metric  *prometheus.CounterVec
}

type tallyKey struct {
	site  string
	day   int64
	cat   sensitive.Category
	layer sensitive.Layer
}

func newSensitiveTally(reg prometheus.Registerer) *sensitiveTally {
	t := &sensitiveTally{
		counts: map[tallyKey]*storage.SensitiveCount{},
		metric: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_sensitive_detections_total",
			Help: "Events in which a special category of data was detected, per site, category and layer.",
		}, []string{"site", "category", "layer"}),
	}
	reg.MustRegister(t.metric)
	return t
}

// add counts the detections of one event: once per category and layer.
func (t *sensitiveTally) add(site string, at time.Time, f *sensitive.Findings) {
	y, m, d := at.UTC().Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range f.Hits {
		k := tallyKey{site: site, day: day.UnixMilli(), cat: h.Category, layer: h.Layer}
		c := t.counts[k]
		if c == nil {
			c = &storage.SensitiveCount{Site: site, Day: day, Category: h.Category.String(), Layer: h.Layer.String()}
			t.counts[k] = c
		}
		c.Count++
		ex := storage.SensitiveExample{Field: h.Field, Pattern: h.Pattern, Example: h.Example}
		if len(c.Examples) < storage.MaxSensitiveExamples && !slices.Contains(c.Examples, ex) {
			c.Examples = append(c.Examples, ex)
		}
		t.metric.WithLabelValues(site, h.Category.String(), h.Layer.String()).Inc()
	}
}

// take empties the tally and returns what it held.
func (t *sensitiveTally) take() []storage.SensitiveCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]storage.SensitiveCount, 0, len(t.counts))
	for _, c := range t.counts {
		out = append(out, *c)
	}
	clear(t.counts)
	return out
}

// giveBack merges counts a failed flush could not store.
func (t *sensitiveTally) giveBack(cs []storage.SensitiveCount) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		cat, _ := sensitive.ParseCategory(c.Category)
		layer, _ := sensitive.ParseLayer(c.Layer)
		k := tallyKey{site: c.Site, day: c.Day.UnixMilli(), cat: cat, layer: layer}
		if cur := t.counts[k]; cur != nil {
			cur.Count += c.Count
			continue
		}
		cc := c
		t.counts[k] = &cc
	}
}

// countSensitive records a pipeline result's detections (from count).
func (s *Server) countSensitive(st *site, res *pipeline.Result) {
	if s.sensitive != nil && res.Sensitive.Any() {
		s.sensitive.add(st.cfg.ID, time.Now(), &res.Sensitive)
	}
}

// flushSensitive adds the detections counted in memory to Badger, with the
// anonymous retention; on failure they stay in memory for the next flush.
func (s *Server) flushSensitive(ctx context.Context) error {
	t := s.sensitive
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	cs := t.take()
	if len(cs) == 0 {
		return nil
	}
	if err := s.store.AddSensitive(ctx, cs, s.cfg.RetentionOf(config.RetentionAnonymous)); err != nil {
		t.giveBack(cs)
		return err
	}
	return nil
}

// startSensitive starts the flusher; it stops with ctx (the publisher's),
// after a last flush.
func (s *Server) startSensitive(ctx context.Context) {
	s.sensitive = newSensitiveTally(s.metrics.reg)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(sensitiveFlushInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				// In-flight requests are finished by now (the HTTP
				// server shut down first): this flush is the last.
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := s.flushSensitive(fctx); err != nil {
					s.log.Warn("sensitive-data detections not stored", "err", err)
				}
				cancel()
				return
			case <-tick.C:
				if err := s.flushSensitive(ctx); err != nil {
					s.log.Warn("sensitive-data detections not stored yet", "err", err)
				}
			}
		}
	}()
}

// The report's types are declared once, in package storage beside the
// counts they sum, and shared with the console.
type (
	SensitiveReport      = storage.SensitiveReport
	SensitiveCategoryRow = storage.SensitiveCategoryRow
	SensitiveDetection   = storage.SensitiveDetection
	SensitiveDay         = storage.SensitiveDay
)

// SensitiveReport builds the report of site for the UTC days overlapping
// [from, to) (zero: unbounded), the console's "sensitive data" page and
// GET /admin/v1/sensitive. What was counted since the last flush is
// stored first.
func (s *Server) SensitiveReport(ctx context.Context, site string, from, to time.Time) (SensitiveReport, error) {
	st := s.siteByID(site)
	if st == nil {
		return SensitiveReport{}, ErrUnknownSite
	}
	if s.store == nil || s.sensitive == nil {
		return SensitiveReport{}, ErrNotStarted
	}
	if err := s.flushSensitive(ctx); err != nil {
		return SensitiveReport{}, err
	}
	counts, err := s.store.SensitiveCounts(ctx, site, from, to)
	if err != nil {
		return SensitiveReport{}, err
	}
	pol := st.pipe.SensitivePolicy()
	rep := SensitiveReport{Site: site, From: from, To: to, Detections: []SensitiveDetection{}, Days: []SensitiveDay{}}
	rows := map[string]*SensitiveCategoryRow{}
	for _, c := range sensitive.AllCategories() {
		rep.Categories = append(rep.Categories, SensitiveCategoryRow{
			Category: c.String(), Label: c.Label(), Article: c.Article(), Action: pol.Actions[c].String(),
			Layers: map[string]uint64{},
		})
	}
	for i := range rep.Categories {
		rows[rep.Categories[i].Category] = &rep.Categories[i]
	}
	cells := map[[2]string]*SensitiveDetection{}
	for _, c := range counts {
		rep.Total += c.Count
		if r := rows[c.Category]; r != nil {
			r.Total += c.Count
			r.Layers[c.Layer] += c.Count
		}
		k := [2]string{c.Category, c.Layer}
		d := cells[k]
		if d == nil {
			d = &SensitiveDetection{Category: c.Category, Layer: c.Layer, Examples: []storage.SensitiveExample{}}
			cells[k] = d
		}
		d.Count += c.Count
		for _, e := range c.Examples {
			if len(d.Examples) < storage.MaxSensitiveExamples && !slices.Contains(d.Examples, e) {
				d.Examples = append(d.Examples, e)
			}
		}
		rep.Days = append(rep.Days, SensitiveDay{Day: c.Day.Format(time.DateOnly), Category: c.Category, Layer: c.Layer, Count: c.Count})
	}
	for _, d := range cells {
		rep.Detections = append(rep.Detections, *d)
	}
	// In category order, then layer order, as the categories rows.
	order := func(d SensitiveDetection) (int, int) {
		c, _ := sensitive.ParseCategory(d.Category)
		l := slices.IndexFunc(sensitive.AllLayers(), func(l sensitive.Layer) bool { return l.String() == d.Layer })
		return int(c), l
	}
	slices.SortFunc(rep.Detections, func(a, b SensitiveDetection) int {
		ca, la := order(a)
		cb, lb := order(b)
		return cmp.Or(cmp.Compare(ca, cb), cmp.Compare(la, lb))
	})
	return rep, nil
}

// handleAdminSensitive answers GET /admin/v1/sensitive: the report of
// SensitiveReport. Query: site (may be left out with one site), from and
// to (RFC 3339 times or YYYY-MM-DD days; from included, to excluded).
func (s *Server) handleAdminSensitive(w http.ResponseWriter, r *http.Request) {
	site, _, ok := s.siteAndLimit(w, r, 1)
	if !ok {
		return
	}
	q := r.URL.Query()
	var from, to time.Time
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t, err = time.Parse(time.DateOnly, v)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_time", p.name+": must be an RFC 3339 time such as 2026-03-01T00:00:00Z or a day such as 2026-03-01", nil)
			return
		}
		*p.dst = t
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		writeError(w, http.StatusBadRequest, "invalid_time", "from: must be before to", nil)
		return
	}
	rep, err := s.SensitiveReport(r.Context(), site, from, to)
	if err != nil {
		s.log.Error("reading sensitive-data detections failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the detections could not be read; retry later", nil)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
