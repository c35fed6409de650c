package model

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
)

// The encoded state (version 1) is little-endian with unsigned and signed
// varints (encoding/binary):
//
//	magic "VRSP", uvarint version (1), varint clock (Unix ms)
//	uvarint #contact types, each a string (uvarint length, bytes)
//	uvarint #message types, each a string
//	uvarint #subjects, subjects in increasing byte order, each:
//	  string subject
//	  uvarint #contributions, each:
//	    uvarint contact type, uvarint message type,
//	    byte flags (bit 0 holdout arm, bit 1 r present, bit 2 c present),
//	    float64 n, [float64 r], [float64 c], varint time (Unix ms)
//	  uvarint #pending exposures, each:
//	    string id, string key, varint time (Unix ms),
//	    uvarint contact type, uvarint message type,
//	    byte flags (bit 0 holdout arm, bit 1 responded, bit 2 converted)
//
// Types are stored by name and matched by name when loaded, so that a
// configuration that adds, removes or reorders types keeps what still
// applies. The cells are not stored: they are the sum of the subjects'
// contributions and are rebuilt when loading.
const (
	magic         = "VRSP"
	formatVersion = 1
	// maxString bounds any string of the encoding (subjects, ids, keys).
	maxString = 1024
)

// Bits of the encoded flags bytes.
const (
	encHoldout   = 1 << 0
	encR         = 1 << 1
	encC         = 1 << 2
	encResponded = 1 << 1
	encConverted = 1 << 2
)

// ShardOf returns the shard of subject among n (FNV-1a, 32 bits).
func ShardOf(subject string, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h ^= uint32(subject[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// Shards returns the number of shards.
func (m *Model) Shards() int { return len(m.shards) }

// SetShards spreads the subjects over n shards (1 ≤ n ≤ MaxShards) and
// marks every shard dirty.
func (m *Model) SetShards(n int) error {
	if n < 1 || n > MaxShards {
		return fmt.Errorf("%w: shards %d must be in [1, %d]", ErrConfig, n, MaxShards)
	}
	m.setShards(n)
	for i := range m.dirty {
		m.dirty[i] = true
	}
	return nil
}

// setShards redistributes the subjects over n shards.
func (m *Model) setShards(n int) {
	old := m.shards
	m.shards = make([]map[string]*subject, n)
	for i := range m.shards {
		m.shards[i] = map[string]*subject{}
	}
	m.dirty = make([]bool, n)
	m.nsubject = 0
	for _, sh := range old {
		for name, s := range sh {
			m.put(name, s)
		}
	}
}

// markDirty marks the shard of subject as changed since it was encoded.
func (m *Model) markDirty(subject string) {
	m.dirty[ShardOf(subject, len(m.dirty))] = true
}

// Dirty lists, in increasing order, the shards changed since they were
// last marked clean.
func (m *Model) Dirty() []int {
	var out []int
	for i, d := range m.dirty {
		if d {
			out = append(out, i)
		}
	}
	return out
}

// MarkDirty marks shard i as changed (e.g. when its stored copy could
// not be read and must be written again).
func (m *Model) MarkDirty(i int) {
	if i >= 0 && i < len(m.dirty) {
		m.dirty[i] = true
	}
}

// MarkClean records that shard i was stored as last encoded.
func (m *Model) MarkClean(i int) {
	if i >= 0 && i < len(m.dirty) {
		m.dirty[i] = false
	}
}

// MarshalShard encodes the subjects of shard i (the cells are derived
// from them); Load of every shard rebuilds the model.
func (m *Model) MarshalShard(i int) ([]byte, error) {
	if i < 0 || i >= len(m.shards) {
		return nil, fmt.Errorf("%w: shard %d of %d", ErrInvalid, i, len(m.shards))
	}
	return m.encode([]map[string]*subject{m.shards[i]}), nil
}

// MarshalBinary encodes the whole model in one piece, for
// encoding.BinaryMarshaler.
func (m *Model) MarshalBinary() ([]byte, error) {
	return m.encode(m.shards), nil
}

// encode writes the subjects of shards.
func (m *Model) encode(shards []map[string]*subject) []byte {
	var names []string
	for _, sh := range shards {
		names = slices.AppendSeq(names, maps.Keys(sh))
	}
	slices.Sort(names)
	b := make([]byte, 0, 64+len(names)*96)
	b = append(b, magic...)
	b = binary.AppendUvarint(b, formatVersion)
	b = binary.AppendVarint(b, m.clock)
	ctNames := m.ContactTypes()
	b = binary.AppendUvarint(b, uint64(len(ctNames)))
	for _, n := range ctNames {
		b = appendString(b, n)
	}
	b = binary.AppendUvarint(b, uint64(m.nmt))
	for _, mt := range m.cfg.MessageTypes {
		b = appendString(b, mt.Name)
	}
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		s := m.get(name)
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(s.contribs)))
		for _, c := range s.contribs {
			b = binary.AppendUvarint(b, uint64(int(c.cell)/m.nmt))
			b = binary.AppendUvarint(b, uint64(int(c.cell)%m.nmt))
			var f byte
			if c.arm == Holdout {
				f |= encHoldout
			}
			if c.r != 0 {
				f |= encR
			}
			if c.c != 0 {
				f |= encC
			}
			b = append(b, f)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.n))
			if c.r != 0 {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.r))
			}
			if c.c != 0 {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.c))
			}
			b = binary.AppendVarint(b, c.t)
		}
		b = binary.AppendUvarint(b, uint64(len(s.pending)))
		for _, p := range s.pending {
			b = appendString(b, p.id)
			b = appendString(b, p.key)
			b = binary.AppendVarint(b, p.at)
			b = binary.AppendUvarint(b, uint64(int(p.cell)/m.nmt))
			b = binary.AppendUvarint(b, uint64(int(p.cell)%m.nmt))
			var f byte
			if p.arm == Holdout {
				f |= encHoldout
			}
			if p.flags&responded != 0 {
				f |= encResponded
			}
			if p.flags&converted != 0 {
				f |= encConverted
			}
			b = append(b, f)
		}
	}
	return b
}

// appendString appends a length-prefixed string.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalBinary replaces the model's subjects with those encoded in
// data (from MarshalBinary), for encoding.BinaryUnmarshaler.
func (m *Model) UnmarshalBinary(data []byte) error {
	if m.readOnly {
		return ErrReadOnly
	}
	state, err := m.decode(data)
	if err != nil {
		return err
	}
	m.cells = make([][2]counts, len(m.cells))
	for i := range m.version {
		m.version[i]++
	}
	m.shards = nil
	m.setShards(len(m.dirty))
	m.clock = 0
	m.apply(state)
	return nil
}

// Load adds the subjects encoded in data (from MarshalShard or
// MarshalBinary) to the model, replacing the records of subjects it
// already holds. Types the configuration no longer has are dropped. Data
// that does not decode changes nothing: ErrCorrupt, or ErrVersion for a
// newer format.
func (m *Model) Load(data []byte) error {
	if m.readOnly {
		return ErrReadOnly
	}
	state, err := m.decode(data)
	if err != nil {
		return err
	}
	m.apply(state)
	return nil
}

// named is a decoded subject record.
type named struct {
	name string
	s    *subject
}

// decoded is decoded state.
type decoded struct {
	clock    int64
	subjects []named
}

// apply adds decoded subjects to the model.
func (m *Model) apply(decoded decoded) {
	m.tick(decoded.clock)
	for _, d := range decoded.subjects {
		if old := m.get(d.name); old != nil {
			m.subtract(old)
			m.remove(d.name)
		}
		for _, c := range d.s.contribs {
			m.cells[c.cell][c.arm].add(c.t, c.n, c.r, c.c, m.lambda)
			m.version[int(c.cell)%m.nmt]++
			m.tick(c.t)
		}
		for _, p := range d.s.pending {
			m.tick(p.at)
		}
		m.put(d.name, d.s)
	}
}

// decode parses data into subject records without touching the model.
func (m *Model) decode(data []byte) (decoded, error) {
	d := decoder{b: data}
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return decoded{}, fmt.Errorf("%w: not response model state", ErrCorrupt)
	}
	d.off = len(magic)
	if v := d.uvarint(); d.err == nil && v != formatVersion {
		if v > formatVersion {
			return decoded{}, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, v, formatVersion)
		}
		return decoded{}, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	clock := d.varint()
	ctMap := d.nameMap(m.ctIdx)
	mtMap := d.nameMap(m.mtIdx)
	cellOf := func(ct, mt uint64) (uint32, bool) {
		if ct >= uint64(len(ctMap)) || mt >= uint64(len(mtMap)) {
			d.fail("type index out of range")
			return 0, false
		}
		if ctMap[ct] < 0 || mtMap[mt] < 0 {
			return 0, false // a type the configuration no longer has
		}
		return uint32(ctMap[ct]*m.nmt + mtMap[mt]), true
	}
	n := d.count()
	out := make([]named, 0, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str()
		if d.err == nil && (name == "" || (i > 0 && name <= prev)) {
			d.fail("subjects empty or not in increasing order")
		}
		prev = name
		s := &subject{}
		nc := d.count()
		for j := 0; j < nc && d.err == nil; j++ {
			ct, mt := d.uvarint(), d.uvarint()
			f := d.byte()
			var c contrib
			c.n = d.f64()
			if f&encR != 0 {
				c.r = d.f64()
			}
			if f&encC != 0 {
				c.c = d.f64()
			}
			c.t = d.varint()
			if f&^(encHoldout|encR|encC) != 0 {
				d.fail("unknown contribution flags")
			}
			cell, ok := cellOf(ct, mt)
			if d.err != nil || !ok {
				continue
			}
			c.cell, c.arm = cell, Arm(f&encHoldout)
			c.r, c.c = min(c.r, c.n), min(c.c, c.n)
			for _, o := range s.contribs {
				if o.cell == c.cell && o.arm == c.arm {
					d.fail("duplicate contribution")
				}
			}
			if !c.empty() {
				s.contribs = append(s.contribs, c)
			}
		}
		np := d.count()
		for j := 0; j < np && d.err == nil; j++ {
			var p pending
			p.id, p.key = d.str(), d.str()
			p.at = d.varint()
			ct, mt := d.uvarint(), d.uvarint()
			f := d.byte()
			if f&^(encHoldout|encResponded|encConverted) != 0 {
				d.fail("unknown pending flags")
			}
			cell, ok := cellOf(ct, mt)
			if d.err != nil || !ok {
				continue
			}
			p.cell, p.arm = cell, Arm(f&encHoldout)
			if f&encResponded != 0 {
				p.flags |= responded
			}
			if f&encConverted != 0 {
				p.flags |= converted
			}
			// An exposure awaits a response only in a cell it counted in.
			if slices.ContainsFunc(s.contribs, func(c contrib) bool { return c.cell == p.cell && c.arm == p.arm }) &&
				len(s.pending) < m.cfg.MaxPending {
				s.pending = append(s.pending, p)
			}
		}
		if len(s.contribs) > 0 || len(s.pending) > 0 {
			out = append(out, named{name: name, s: s})
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return decoded{}, d.err
	}
	return decoded{clock: clock, subjects: out}, nil
}

// decoder reads the encoding; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

// fail records a corruption.
func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrCorrupt, what, d.off)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// count reads a count, bounded by the bytes left (every element takes at
// least one), so that a damaged count cannot make a huge allocation.
func (d *decoder) count() int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)-d.off) {
		d.fail("count larger than the data")
		return 0
	}
	return int(v)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

// f64 reads a count: finite and not negative.
func (d *decoder) f64() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
	d.off += 8
	if !(v >= 0) || math.IsInf(v, 0) {
		d.fail("count not finite and positive")
		return 0
	}
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxString || n > uint64(len(d.b)-d.off) {
		d.fail("string too long")
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// nameMap reads a table of type names and maps each position to the
// index of the same name in idx, or -1.
func (d *decoder) nameMap(idx map[string]int) []int {
	n := d.count()
	out := make([]int, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str()
		j, ok := idx[name]
		if !ok {
			j = -1
		}
		out = append(out, j)
	}
	return out
}
