package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// stateConfig has decay, two contact types, a holdout-able type.
func stateConfig() Config {
	cfg := segmentsConfig(2, 3)
	cfg.HalfLife = 14 * day
	return cfg
}

// populate feeds a model a mix of exposures (both arms, Other included),
// responses and conversions, some still pending at the end.
func populate(tb testing.TB, m *Model, subjects int) {
	tb.Helper()
	r := rng(5)
	for i := range subjects * 3 {
		subj := fmt.Sprintf("subject-%04d", r.IntN(subjects))
		at := days(r.Float64() * 10)
		mt := fmt.Sprintf("msg-%d", r.IntN(3))
		arm := Treated
		if r.IntN(8) == 0 {
			arm = Holdout
		}
		expose(tb, m, Exposure{ID: fmt.Sprint("e", i), Subject: subj, Segments: []string{fmt.Sprintf("seg-%d", r.IntN(3))},
			MessageType: mt, Arm: arm, Key: "email:" + mt, At: at})
		if r.IntN(3) == 0 {
			respond(tb, m, Response{Subject: subj, Kind: Click, Key: "email:" + mt, At: at.Add(time.Hour)})
		}
		if r.IntN(5) == 0 {
			respond(tb, m, Response{Subject: subj, Kind: Conversion, Event: "Order Completed", At: at.Add(day)})
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	a := mustNew(t, stateConfig())
	populate(t, a, 200)
	data, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := mustNew(t, stateConfig())
	expose(t, b, Exposure{Subject: "replaced", MessageType: "msg-0", At: t0}) // UnmarshalBinary replaces everything
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	assertCellsEqual(t, a, b, days(12), 1e-12)
	if a.Subjects() != b.Subjects() || b.Has("replaced") || !a.Clock().Equal(b.Clock()) {
		t.Fatalf("subjects %d vs %d, replaced %v, clock %v vs %v", a.Subjects(), b.Subjects(), b.Has("replaced"), a.Clock(), b.Clock())
	}
	again, _ := b.MarshalBinary()
	if !bytes.Equal(data, again) {
		t.Error("encoding of the decoded state differs")
	}
	t.Logf("%d subjects in %d bytes (%.0f B/subject)", a.Subjects(), len(data), float64(len(data))/float64(a.Subjects()))
	// Pending exposures survive: the same responses count the same way,
	// and forgetting still subtracts exactly.
	for _, m := range []*Model{a, b} {
		for i := range 200 {
			subj := fmt.Sprintf("subject-%04d", i)
			for _, k := range []Kind{Click, Conversion} {
				respond(t, m, Response{Subject: subj, Kind: k, Key: "email:msg-1", Event: "Order Completed", At: days(10.5)})
			}
		}
		m.Forget("subject-0007")
		m.Forget("subject-0150")
	}
	assertCellsEqual(t, a, b, days(12), 1e-9)
}

func TestShards(t *testing.T) {
	whole := mustNew(t, stateConfig())
	populate(t, whole, 300)
	if err := whole.SetShards(8); err != nil {
		t.Fatal(err)
	}
	if d := whole.Dirty(); len(d) != 8 {
		t.Fatalf("dirty after SetShards: %v, want all 8", d)
	}
	restored := mustNew(t, Config{ContactTypes: stateConfig().ContactTypes, MessageTypes: stateConfig().MessageTypes, HalfLife: 14 * day, Shards: 8})
	total := 0
	for i := range whole.Shards() {
		data, err := whole.MarshalShard(i)
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
		if err := restored.Load(data); err != nil {
			t.Fatal(err)
		}
		whole.MarkClean(i)
	}
	assertCellsEqual(t, whole, restored, days(12), 1e-12)
	if whole.Subjects() != restored.Subjects() || len(whole.Dirty()) != 0 {
		t.Fatalf("subjects %d vs %d; dirty %v", whole.Subjects(), restored.Subjects(), whole.Dirty())
	}
	// A change dirties the subject's shard only.
	expose(t, whole, Exposure{Subject: "subject-0042", MessageType: "msg-0", At: days(11)})
	if d, want := whole.Dirty(), ShardOf("subject-0042", 8); len(d) != 1 || d[0] != want {
		t.Errorf("dirty %v, want [%d]", d, want)
	}
	// Loading a shard again replaces its subjects rather than adding them.
	data, _ := whole.MarshalShard(ShardOf("subject-0042", 8))
	if err := restored.Load(data); err != nil {
		t.Fatal(err)
	}
	assertCellsEqual(t, whole, restored, days(12), 1e-12)
	if _, err := whole.MarshalShard(8); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarshalShard(8) of 8: %v", err)
	}
}

// TestLoadOtherConfig: types are matched by name; those the new
// configuration lacks are dropped, the others land in their new place.
func TestLoadOtherConfig(t *testing.T) {
	a := mustNew(t, stateConfig())
	populate(t, a, 100)
	data, _ := a.MarshalBinary()
	cfg := stateConfig()
	cfg.ContactTypes = []ContactType{{Name: "new", Segments: []string{"x"}}, cfg.ContactTypes[1]} // seg-0 gone
	cfg.MessageTypes = []MessageType{cfg.MessageTypes[2], {Name: "fresh"}, cfg.MessageTypes[0]}   // msg-1 gone
	b := mustNew(t, cfg)
	if err := b.Load(data); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"seg-1", Other} {
		for _, mt := range []string{"msg-0", "msg-2"} {
			for arm := range Arm(2) {
				x, y := cellCounts(a, ct, mt, arm, days(12)), cellCounts(b, ct, mt, arm, days(12))
				if !near(x.n, y.n, 1e-12) || !near(x.r, y.r, 1e-12) || !near(x.c, y.c, 1e-12) || x.n == 0 && arm == Treated {
					t.Errorf("%s×%s arm %d: %+v vs %+v", ct, mt, arm, x, y)
				}
			}
		}
	}
	for _, e := range b.Table(days(12)) {
		if (e.ContactType == "new" || e.MessageType == "fresh") && e.Exposures != 0 {
			t.Errorf("%s×%s has %v exposures, want 0", e.ContactType, e.MessageType, e.Exposures)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	m := mustNew(t, stateConfig())
	populate(t, m, 20)
	valid, _ := m.MarshalBinary()
	header := func(version uint64) []byte {
		return binary.AppendVarint(binary.AppendUvarint([]byte(magic), version), 0)
	}
	withSubject := func(f func(b []byte) []byte) []byte {
		b := header(formatVersion)
		b = binary.AppendUvarint(b, 1)
		b = appendString(b, Other)
		b = binary.AppendUvarint(b, 1)
		b = appendString(b, "msg-0")
		b = binary.AppendUvarint(b, 1)
		b = appendString(b, "s")
		return f(b)
	}
	contrib := func(n float64) []byte {
		return withSubject(func(b []byte) []byte {
			b = binary.AppendUvarint(b, 1)
			b = append(b, 0, 0, 0)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(n))
			b = binary.AppendVarint(b, 1)
			return binary.AppendUvarint(b, 0)
		})
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"bad magic", []byte("VRSX\x01\x00\x00\x00"), ErrCorrupt},
		{"newer version", append(header(2), 0, 0, 0), ErrVersion},
		{"version 0", append(header(0), 0, 0, 0), ErrCorrupt},
		{"trailing bytes", append(append([]byte{}, valid...), 0), ErrCorrupt},
		{"huge count", append(header(formatVersion), 0xff, 0xff, 0xff, 0xff, 0x0f), ErrCorrupt},
		{"NaN count", contrib(math.NaN()), ErrCorrupt},
		{"negative count", contrib(-1), ErrCorrupt},
		{"infinite count", contrib(math.Inf(1)), ErrCorrupt},
		{"type index out of range", withSubject(func(b []byte) []byte {
			b = binary.AppendUvarint(b, 1)
			return append(b, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 2, 0)
		}), ErrCorrupt},
		{"subjects out of order", func() []byte {
			b := header(formatVersion)
			b = append(b, 0, 0, 2)
			b = appendString(b, "b")
			b = append(b, 0, 0)
			b = appendString(b, "a")
			return append(b, 0, 0)
		}(), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh := mustNew(t, stateConfig())
			expose(t, fresh, Exposure{Subject: "kept", MessageType: "msg-0", At: t0})
			before, _ := fresh.MarshalBinary()
			if err := fresh.Load(tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v, want %v", err, tc.want)
			}
			if after, _ := fresh.MarshalBinary(); !bytes.Equal(before, after) {
				t.Error("a failed Load changed the model")
			}
		})
	}
	// Every truncation of a valid state fails cleanly.
	for i := range len(valid) {
		if err := mustNew(t, stateConfig()).Load(valid[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load of the first %d of %d bytes = %v, want ErrCorrupt", i, len(valid), err)
		}
	}
}
