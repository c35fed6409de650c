package model

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestSummary: a summary answers Table, Next, PickFor and Uplift as the
// model that wrote it, and refuses to record.
func TestSummary(t *testing.T) {
	a := mustNew(t, stateConfig())
	populate(t, a, 200)
	data, err := a.MarshalSummary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSummary(stateConfig(), data)
	if err != nil {
		t.Fatal(err)
	}
	if !s.ReadOnly() || a.ReadOnly() || s.Subjects() != 0 || !s.Clock().Equal(a.Clock()) {
		t.Fatalf("read-only %v/%v, subjects %d, clock %v vs %v", s.ReadOnly(), a.ReadOnly(), s.Subjects(), s.Clock(), a.Clock())
	}
	assertCellsEqual(t, a, s, days(12), 0)
	at := days(11)
	if ta, ts := a.Table(at), s.Table(at); !reflect.DeepEqual(ta, ts) {
		t.Fatalf("tables differ:\n%+v\n%+v", ta, ts)
	}
	cands := a.MessageTypes()
	pa, err := a.NextFor(rand.NewPCG(1, 2), []string{"seg-1"}, cands, at)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := s.NextFor(rand.NewPCG(1, 2), []string{"seg-1"}, cands, at)
	if !reflect.DeepEqual(pa, ps) {
		t.Fatalf("picks differ: %+v vs %+v", pa, ps)
	}
	if mt, _ := s.PickFor(rand.NewPCG(1, 2), []string{"seg-1"}, cands, at); mt != pa.MessageType {
		t.Fatalf("PickFor = %q, NextFor picked %q", mt, pa.MessageType)
	}
	ua, _ := a.Uplift(rand.NewPCG(3, 4), "seg-0", "msg-1", at, 500)
	us, _ := s.Uplift(rand.NewPCG(3, 4), "seg-0", "msg-1", at, 500)
	if !reflect.DeepEqual(ua, us) {
		t.Fatalf("uplifts differ: %+v vs %+v", ua, us)
	}
	if _, err := s.Expose(Exposure{Subject: "x", MessageType: "msg-0", At: at}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Expose on a summary = %v", err)
	}
	if _, err := s.Respond(Response{Subject: "x", Kind: Click, At: at}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Respond on a summary = %v", err)
	}
	state, _ := a.MarshalBinary()
	if err := s.Load(state); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Load on a summary = %v", err)
	}
}

// TestSummaryTypesByName: types are matched by name, dropped or added
// with the configuration; damaged data is refused.
func TestSummaryTypesByName(t *testing.T) {
	a := mustNew(t, stateConfig())
	populate(t, a, 50)
	data, _ := a.MarshalSummary()
	cfg := stateConfig()
	cfg.MessageTypes = append(cfg.MessageTypes[1:], MessageType{Name: "new", Responses: Click})
	s, err := NewSummary(cfg, data)
	if err != nil {
		t.Fatal(err)
	}
	at := days(12)
	for _, ct := range a.ContactTypes() {
		if got, want := cellCounts(s, ct, "msg-2", Treated, at), cellCounts(a, ct, "msg-2", Treated, at); got != want {
			t.Errorf("%s×msg-2: %+v, want %+v", ct, got, want)
		}
		if got := cellCounts(s, ct, "new", Treated, at); !got.empty() {
			t.Errorf("%s×new: %+v, want empty", ct, got)
		}
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"state":     func() []byte { b, _ := a.MarshalBinary(); return b }(),
		"truncated": data[:len(data)-3],
		"trailing":  append(append([]byte{}, data...), 0),
		"newer":     append([]byte(summaryMagic), 9),
	} {
		_, err := NewSummary(stateConfig(), bad)
		want := ErrCorrupt
		if name == "newer" {
			want = ErrVersion
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

// TestAddSummary: the summaries of two models, each fed the events of
// half the subjects (two nodes' partitions), add up to the summary of one
// model fed every event; only summaries of one shape add up.
func TestAddSummary(t *testing.T) {
	all := mustNew(t, stateConfig())
	parts := []*Model{mustNew(t, stateConfig()), mustNew(t, stateConfig())}
	// Events in time order, as a node receives them: a model judges a
	// response window against its clock, which each part moves with its
	// own subjects' events only.
	type step struct {
		subj, mt       string
		at             time.Time
		arm            Arm
		click, convert bool
	}
	r := rng(7)
	steps := make([]step, 600)
	for i := range steps {
		steps[i] = step{subj: fmt.Sprintf("subject-%04d", r.IntN(200)), mt: fmt.Sprintf("msg-%d", r.IntN(3)),
			at: days(float64(i) / 60), arm: Treated, click: r.IntN(3) == 0, convert: r.IntN(5) == 0}
		if r.IntN(8) == 0 {
			steps[i].arm = Holdout
		}
	}
	for i, st := range steps {
		for _, m := range []*Model{all, parts[ShardOf(st.subj, 2)]} {
			expose(t, m, Exposure{ID: fmt.Sprint("e", i), Subject: st.subj, Segments: []string{fmt.Sprintf("seg-%d", i%3)},
				MessageType: st.mt, Arm: st.arm, Key: "email:" + st.mt, At: st.at})
			if st.click {
				respond(t, m, Response{Subject: st.subj, Kind: Click, Key: "email:" + st.mt, At: st.at.Add(time.Minute)})
			}
			if st.convert {
				respond(t, m, Response{Subject: st.subj, Kind: Conversion, Event: "Order Completed", At: st.at.Add(2 * time.Minute)})
			}
		}
	}
	summary := func(m *Model) *Model {
		data, err := m.MarshalSummary()
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSummary(stateConfig(), data)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sum := summary(parts[0])
	if err := sum.AddSummary(summary(parts[1])); err != nil {
		t.Fatal(err)
	}
	if parts[0].Subjects() == 0 || parts[1].Subjects() == 0 {
		t.Fatalf("a part models no one: %d, %d", parts[0].Subjects(), parts[1].Subjects())
	}
	assertCellsEqual(t, all, sum, days(12), 1e-9)
	if !sum.Clock().Equal(all.Clock()) {
		t.Fatalf("clock %v, want %v", sum.Clock(), all.Clock())
	}
	at := days(11)
	ta, ts := all.Table(at), sum.Table(at)
	for i := range ta {
		if !near(ta[i].Exposures, ts[i].Exposures, 1e-9) || !near(ta[i].Mean, ts[i].Mean, 1e-9) {
			t.Fatalf("cell %d: one model %+v, the sum %+v", i, ta[i], ts[i])
		}
	}
	if err := all.AddSummary(sum); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddSummary to a model with subjects = %v", err)
	}
	data, _ := mustNew(t, segmentsConfig(1, 1)).MarshalSummary()
	small, err := NewSummary(segmentsConfig(1, 1), data)
	if err != nil {
		t.Fatal(err)
	}
	if err := sum.AddSummary(small); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddSummary of another shape = %v", err)
	}
}
