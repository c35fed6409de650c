package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// t0 is the start of every test's clock.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// day is 24 hours.
const day = 24 * time.Hour

// days returns t0 plus d days.
func days(d float64) time.Time { return t0.Add(time.Duration(d * float64(day))) }

// mustNew returns a model for cfg or fails the test.
func mustNew(tb testing.TB, cfg Config) *Model {
	tb.Helper()
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// segmentsConfig has one contact type per segment seg-0…seg-(nct−1) and
// message types msg-0…msg-(nmt−1), each counting clicks and the Order
// Completed conversion within 7 days.
func segmentsConfig(nct, nmt int) Config {
	var cfg Config
	for i := range nct {
		cfg.ContactTypes = append(cfg.ContactTypes, ContactType{Name: fmt.Sprintf("seg-%d", i), Segments: []string{fmt.Sprintf("seg-%d", i)}})
	}
	for i := range nmt {
		cfg.MessageTypes = append(cfg.MessageTypes, MessageType{
			Name: fmt.Sprintf("msg-%d", i), Responses: Click | Conversion, Conversions: []string{"Order Completed"},
		})
	}
	return cfg
}

// expose records an exposure or fails the test.
func expose(tb testing.TB, m *Model, e Exposure) Outcome {
	tb.Helper()
	o, err := m.Expose(e)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// respond records a response or fails the test.
func respond(tb testing.TB, m *Model, r Response) Outcome {
	tb.Helper()
	o, err := m.Respond(r)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// cellCounts returns the counts of one arm of a cell as of t.
func cellCounts(m *Model, ct, mt string, arm Arm, t time.Time) counts {
	return m.cells[m.ctIdx[ct]*m.nmt+m.mtIdx[mt]][arm].at(t.UnixMilli(), m.lambda)
}

// near reports whether a and b agree to within tol, relatively for large
// values.
func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*max(1, math.Abs(a), math.Abs(b))
}

// assertCellsEqual fails unless every arm of every cell of a and b holds
// the same counts as of t (to within tol).
func assertCellsEqual(tb testing.TB, a, b *Model, t time.Time, tol float64) {
	tb.Helper()
	ms := t.UnixMilli()
	for i := range a.cells {
		for arm := range 2 {
			x, y := a.cells[i][arm].at(ms, a.lambda), b.cells[i][arm].at(ms, b.lambda)
			if !near(x.n, y.n, tol) || !near(x.r, y.r, tol) || !near(x.c, y.c, tol) {
				tb.Errorf("cell %d arm %d: %+v vs %+v", i, arm, x, y)
			}
		}
	}
}

// rng returns a seeded random generator.
func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }
