package model

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchModel has 10 contact types × 10 message types with 200 000
// exposures spread over 20 000 subjects.
func benchModel(b *testing.B) *Model {
	b.Helper()
	cfg := segmentsConfig(10, 10)
	cfg.HalfLife = 30 * day
	m := mustNew(b, cfg)
	r := rng(1)
	for i := range 200000 {
		subj := fmt.Sprintf("s%d", r.IntN(20000))
		mt := fmt.Sprintf("msg-%d", r.IntN(10))
		at := t0.Add(time.Duration(i) * time.Second)
		expose(b, m, Exposure{Subject: subj, Segments: []string{fmt.Sprintf("seg-%d", r.IntN(11))}, MessageType: mt, Key: mt, At: at})
		if r.IntN(10) == 0 {
			respond(b, m, Response{Subject: subj, Kind: Click, Key: mt, At: at.Add(time.Minute)})
		}
	}
	return m
}

// BenchmarkNext is one Thompson pick among 10 candidates (10 contact
// types): "cached" reuses the priors fitted within the same minute with
// no change to the cells, "refit" changes a cell of every message type
// before each pick (the priors are fitted again, the worst case).
func BenchmarkNext(b *testing.B) {
	m := benchModel(b)
	cands := m.MessageTypes()
	src := rand.NewPCG(1, 2)
	at := t0.Add(60 * time.Hour)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Next(src, "seg-3", cands, at); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("refit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range m.version {
				m.version[i]++
			}
			if _, err := m.Next(src, "seg-3", cands, at); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExpose is one exposure and, one time in ten, a click: the
// per-event cost of the model (decay included).
func BenchmarkExpose(b *testing.B) {
	m := benchModel(b)
	subjects := make([]string, 20000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("s%d", i)
	}
	segs := [][]string{{"seg-1"}, {"seg-4"}, {"x"}}
	at := t0.Add(60 * time.Hour)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		subj := subjects[i%len(subjects)]
		at = at.Add(time.Second)
		if _, err := m.Expose(Exposure{Subject: subj, Segments: segs[i%3], MessageType: "msg-2", Key: "k", At: at}); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if _, err := m.Respond(Response{Subject: subj, Kind: Click, Key: "k", At: at}); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
}

// BenchmarkMemory measures what a subject costs: each iteration adds a
// subject; heap and encoded bytes per subject are reported, with one
// exposure (still awaiting its response) or three exposures in three
// cells after their windows passed (pruned).
func BenchmarkMemory(b *testing.B) {
	for _, tc := range []struct {
		name      string
		exposures int
		prune     bool
	}{{"1 pending exposure", 1, false}, {"3 cells, windows passed", 3, true}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := segmentsConfig(10, 10)
			cfg.HalfLife = 30 * day
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			m := mustNew(b, cfg)
			n := 0
			for b.Loop() {
				subj := fmt.Sprintf("%022d", n) // a pseudonym is 22 bytes
				for j := range tc.exposures {
					mt := fmt.Sprintf("msg-%d", j)
					expose(b, m, Exposure{ID: fmt.Sprintf("01J%023d", n*10+j), Subject: subj, Segments: []string{"seg-2"},
						MessageType: mt, Key: "email:campaign-" + mt, At: t0})
				}
				n++
			}
			if tc.prune {
				m.Prune(days(8))
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			data, _ := m.MarshalBinary()
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/subject")
			b.ReportMetric(float64(len(data))/float64(n), "encoded-B/subject")
			runtime.KeepAlive(m)
		})
	}
}
