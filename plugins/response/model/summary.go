package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// A summary is the model's cells without its subjects: what a reader of
// the model needs for Table, Estimate, Next, NextFor and Uplift (the
// admin API and the console, in another process than the plugin), a few
// hundred bytes whatever the number of subjects. Encoding (version 1):
//
//	magic "VRSC", uvarint version (1), varint clock (Unix ms)
//	uvarint #contact types, each a string; uvarint #message types, each
//	a string (the contact types include Other, last)
//	then for each contact type × message type, for each arm (treated,
//	holdout): byte flags (bit 0 present), and if present float64 n, r,
//	c and varint time (Unix ms)
//
// Types are matched by name when read, as in the subjects' encoding.
const (
	summaryMagic   = "VRSC"
	summaryVersion = 1
)

// MarshalSummary encodes the model's cells (not its subjects) for
// NewSummary.
func (m *Model) MarshalSummary() ([]byte, error) {
	b := make([]byte, 0, 32+m.nct*m.nmt*2*33)
	b = append(b, summaryMagic...)
	b = binary.AppendUvarint(b, summaryVersion)
	b = binary.AppendVarint(b, m.clock)
	b = binary.AppendUvarint(b, uint64(m.nct))
	for _, n := range m.ContactTypes() {
		b = appendString(b, n)
	}
	b = binary.AppendUvarint(b, uint64(m.nmt))
	for _, mt := range m.cfg.MessageTypes {
		b = appendString(b, mt.Name)
	}
	for _, cell := range m.cells {
		for _, k := range cell {
			if k.empty() {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			for _, v := range [...]float64{k.n, k.r, k.c} {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			}
			b = binary.AppendVarint(b, k.t)
		}
	}
	return b, nil
}

// NewSummary returns a read-only model, under cfg, of the cells encoded
// in data (MarshalSummary): Table, Estimate, Next, NextFor, PickFor and
// Uplift answer as the model that wrote it did at the time it wrote it.
// It holds no subject: Expose and Respond on it fail with ErrReadOnly.
// Cells of types cfg does not have are dropped; types cfg adds are empty.
func NewSummary(cfg Config, data []byte) (*Model, error) {
	m, err := New(cfg)
	if err != nil {
		return nil, err
	}
	m.readOnly = true
	d := decoder{b: data}
	if len(data) < len(summaryMagic) || string(data[:len(summaryMagic)]) != summaryMagic {
		return nil, fmt.Errorf("%w: not a response model summary", ErrCorrupt)
	}
	d.off = len(summaryMagic)
	if v := d.uvarint(); d.err == nil && v != summaryVersion {
		if v > summaryVersion {
			return nil, fmt.Errorf("%w: summary version %d, this build reads %d", ErrVersion, v, summaryVersion)
		}
		return nil, fmt.Errorf("%w: summary version %d", ErrCorrupt, v)
	}
	clock := d.varint()
	ctMap := d.nameMap(m.ctIdx)
	mtMap := d.nameMap(m.mtIdx)
	for ct := 0; ct < len(ctMap) && d.err == nil; ct++ {
		for mt := 0; mt < len(mtMap) && d.err == nil; mt++ {
			for arm := range 2 {
				f := d.byte()
				if d.err != nil || f == 0 {
					continue
				}
				if f != 1 {
					d.fail("unknown cell flags")
					continue
				}
				k := counts{n: d.f64(), r: d.f64(), c: d.f64(), t: d.varint()}
				if ctMap[ct] < 0 || mtMap[mt] < 0 || d.err != nil {
					continue // a type the configuration no longer has
				}
				k.r, k.c = min(k.r, k.n), min(k.c, k.n)
				m.cells[ctMap[ct]*m.nmt+mtMap[mt]][arm] = k
			}
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	m.clock = clock
	return m, nil
}

// AddSummary adds to m, a summary (NewSummary), the cells of o, a
// summary under the same configuration of another part of the population:
// in cluster mode each node models the subjects of the partitions it
// owns, and the cells, sums of decayed pseudo-counts, are additive. Each
// cell's counts are moved to the later of the two times before they are
// added; m's clock becomes the later of the two. It fails with ErrInvalid
// when m is not a summary or o's cells are not shaped as m's.
func (m *Model) AddSummary(o *Model) error {
	if !m.readOnly || !o.readOnly || len(o.cells) != len(m.cells) {
		return fmt.Errorf("%w: only summaries of one configuration add up", ErrInvalid)
	}
	for i := range m.cells {
		for arm, k := range o.cells[i] {
			if k.empty() {
				continue
			}
			m.cells[i][arm].add(k.t, k.n, k.r, k.c, m.lambda)
			m.cells[i][arm].r = min(m.cells[i][arm].r, m.cells[i][arm].n)
			m.cells[i][arm].c = min(m.cells[i][arm].c, m.cells[i][arm].n)
		}
	}
	for i := range m.version {
		m.version[i]++
	}
	m.clock = max(m.clock, o.clock)
	return nil
}

// ReadOnly reports whether m is a summary (NewSummary).
func (m *Model) ReadOnly() bool { return m.readOnly }

// PickFor is NextFor without the credible intervals (cheaper): the
// message type that src's draw from each candidate's posterior ranks
// first, for a subject in segments.
func (m *Model) PickFor(src rand.Source, segments, candidates []string, at time.Time) (string, error) {
	p, err := m.next(src, m.contactType(segments), candidates, at, false)
	if err != nil {
		return "", err
	}
	return p.MessageType, nil
}
