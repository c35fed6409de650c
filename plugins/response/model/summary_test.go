package model

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
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
