package rollup

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/vigie-dev/vigie/storage"
)

// dim is one top-list dimension of a bucket.
type dim uint8

// Dimensions, in their stored order (appending is compatible; reordering is
// not). What each counts is in README.md.
const (
	dimType      dim = iota // event type, every event
	dimPurpose              // granted purposes, one count per purpose of a pseudonymous event
	dimPage                 // page path, page views
	dimEntry                // page path, visits
	dimSource               // referrer host of visits, "(direct)" when none
	dimCampaign             // utm_campaign of visits
	dimUTMSource            // utm_source of visits
	dimUTMMedium            // utm_medium of visits
	dimCountry              // GeoIP country of visits
	dimDevice               // device class of visits
	dimBrowser              // browser of visits
	dimOS                   // operating system of visits
	dimEmail                // e-mail opens and clicks: emailKey(kind, class, campaign, link)
	numDims
)

// Values standing for an absent dimension value.
const (
	keyNone   = "(none)"
	keyDirect = "(direct)"
)

// maxKeyLen bounds a dimension value; longer ones are cut.
const maxKeyLen = 256

// Modes (indexes of bucket.n): vigiev1.Mode's numbers.
const (
	modeUnspecified = iota
	modeAnonymous
	modePseudonymous
	numModes
)

// Metrics (second index of bucket.n).
const (
	metricEvents = iota
	metricPageViews
	metricVisits
	numMetrics
)

// hllPrecision is the HyperLogLog precision: 2^14 registers, a standard
// error of 1.04/√16384 ≈ 0.81 %, 16 KiB once dense (sparse below ~16k
// distinct subjects).
const hllPrecision = 14

// memFactor × TopK is how many distinct values of one dimension a bucket
// keeps exactly in memory before further new values go to "other".
const memFactor = 8

// counter counts the values of one dimension; other sums the values that
// did not fit.
type counter struct {
	m     map[string]uint64
	other uint64
}

// add counts n for k, keeping at most limit distinct values.
func (c *counter) add(k string, n uint64, limit int) {
	if len(c.m) < limit {
		if c.m == nil {
			c.m = make(map[string]uint64, 16)
		}
		if len(k) > maxKeyLen {
			k = clip(k)
		}
		c.m[k] += n
		return
	}
	if len(k) > maxKeyLen {
		k = clip(k)
	}
	if v, ok := c.m[k]; ok {
		c.m[k] = v + n
		return
	}
	c.other += n
}

// total is the sum of every count, other included.
func (c *counter) total() uint64 {
	t := c.other
	for _, v := range c.m {
		t += v
	}
	return t
}

// clip cuts k to maxKeyLen bytes without splitting a UTF-8 sequence, as a
// fresh string (the original may be large).
func clip(k string) string {
	return strings.Clone(strings.ToValidUTF8(k[:maxKeyLen], ""))
}

// bucket is the aggregate of one site over one hour or one day.
type bucket struct {
	kind  storage.RollupKind
	index uint32
	n     [numModes][numMetrics]uint64
	dims  [numDims]counter
	hll   *hyperloglog.Sketch // nil: no subject yet
	// inserts counts subject insertions since the bucket was loaded.
	inserts int

	// epoch and mark are those of the stored version: it includes every
	// message of the source up to mark (see Aggregator).
	epoch, mark uint64
	dirty       bool

	// Persistence of an in-memory bucket. Part 0 is the whole bucket;
	// later parts hold only the changes written since (see flush).
	delta    *bucket  // changes since the last write; nil: none
	stored   bool     // part 0 exists in the store
	included uint64   // highest part number part 0 includes (stored in it)
	lastPart uint64   // highest part number used
	parts    []uint64 // stored parts after part 0, not yet compacted

	// visitors is the HLL estimate, set on decoded (read-only) buckets.
	visitors uint64
	// size is the encoded size, for the cache's accounting.
	size int
}

func newBucket(kind storage.RollupKind, index uint32) *bucket {
	return &bucket{kind: kind, index: index}
}

// covers reports whether the stored version already includes message seq
// of source epoch (seq 0: not a stream message, never covered).
func (b *bucket) covers(epoch, seq uint64) bool {
	return seq != 0 && epoch == b.epoch && seq <= b.mark
}

// denseAfter is the number of subject insertions after which a bucket's
// sketch is made dense. The library keeps a sketch sparse up to 16 384
// distinct values, re-sorting its sparse list every 164 insertions, which
// costs more and more as it grows; a bucket that saw this many subjects
// will likely see many more.
const denseAfter = 4096

// insert adds a subject hash to the bucket's HLL, created sparse on first
// use and made dense after denseAfter insertions.
func (b *bucket) insert(h uint64) {
	if b.hll == nil {
		b.hll, _ = hyperloglog.NewSketch(hllPrecision, true)
	}
	if b.inserts++; b.inserts == denseAfter {
		dense, _ := hyperloglog.NewSketch(hllPrecision, false)
		_ = dense.Merge(b.hll)
		b.hll = dense
	}
	b.hll.InsertHash(h)
}

// start and end of the bucket's period.
func (b *bucket) start() time.Time { return indexStart(b.kind, b.index) }
func (b *bucket) end() time.Time   { return indexStart(b.kind, b.index+1) }

// indexStart is the start of hour or day index.
func indexStart(kind storage.RollupKind, index uint32) time.Time {
	if kind == storage.RollupDay {
		return time.Unix(int64(index)*86400, 0).UTC()
	}
	return time.Unix(int64(index)*3600, 0).UTC()
}

// clone returns a deep copy of the counts (a snapshot for a query).
func (b *bucket) clone() *bucket {
	c := *b
	c.delta, c.parts = nil, nil
	for d := range c.dims {
		c.dims[d].m = maps.Clone(b.dims[d].m)
	}
	if b.hll != nil {
		c.hll = b.hll.Clone()
	}
	return &c
}

// merge adds o's counts, values (keeping at most limit per dimension)
// and sketch to b.
func (b *bucket) merge(o *bucket, limit int) {
	for m := range o.n {
		for x, v := range o.n[m] {
			b.n[m][x] += v
		}
	}
	for d := range o.dims {
		for k, v := range o.dims[d].m {
			b.dims[d].add(k, v, limit)
		}
		b.dims[d].other += o.dims[d].other
	}
	if o.hll != nil {
		if b.hll == nil {
			b.hll = &hyperloglog.Sketch{}
		}
		_ = b.hll.Merge(o.hll) // same precision: decodeBucket checks it
	}
}

// sizeEstimate approximates b's encoded size without encoding it.
func (b *bucket) sizeEstimate() int {
	n := 64 + 4*b.inserts
	for d := range b.dims {
		n += 24 * len(b.dims[d].m)
	}
	return n
}

// piece is one stored part of a bucket.
type piece struct {
	part uint64
	v    []byte
}

// assemble builds a bucket from its stored parts (in part order): part 0
// plus the later parts it does not include. A part that does not decode
// is skipped (and reported through warn); a part 0 that does not decode
// starts the bucket again. The result records the parts for compaction.
func assemble(kind storage.RollupKind, index uint32, pieces []piece, limit int, warn func(error)) *bucket {
	b := newBucket(kind, index)
	for _, p := range pieces {
		b.lastPart = max(b.lastPart, p.part)
		d, err := decodeBucket(kind, index, p.v)
		if err != nil {
			warn(err)
			if p.part > 0 {
				b.parts = append(b.parts, p.part) // deleted at the next compaction
			}
			continue
		}
		if p.part == 0 {
			d.stored, d.lastPart, d.parts = true, max(b.lastPart, d.included), b.parts
			b = d
			continue
		}
		if p.part <= b.included {
			b.parts = append(b.parts, p.part) // already in part 0: stale
			continue
		}
		b.merge(d, limit)
		b.epoch, b.mark = d.epoch, d.mark
		b.size += d.size
		b.parts = append(b.parts, p.part)
	}
	return b
}

// codecVersion is the first byte of an encoded bucket.
const codecVersion = 1

// entry is one value of a dimension and its count.
type entry struct {
	key string
	n   uint64
}

// byCount orders entries by count, then key (deterministic encodings).
func byCount(a, b entry) int {
	if c := cmp.Compare(b.n, a.n); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

// sorted returns c's values by decreasing count in scratch.
func (c *counter) sorted(scratch []entry) []entry {
	scratch = scratch[:0]
	for k, v := range c.m {
		scratch = append(scratch, entry{k, v})
	}
	slices.SortFunc(scratch, byCount)
	return scratch
}

// appendBinary appends the stored form of b with the given source mark and
// included part number: every dimension cut to its topK largest values,
// the rest added to "other". Layout (uvarints unless said):
//
//	version byte (1)
//	epoch, mark, included (highest later part this value includes)
//	numModes, numMetrics, then numModes×numMetrics counts
//	numDims, then per dimension: n, n × (len, key bytes, count), other
//	len, HLL (axiomhq MarshalBinary; len 0: no subject)
//
// A decoder ignores trailing modes, metrics and dimensions it does not know.
func (b *bucket) appendBinary(dst []byte, epoch, mark, included uint64, topK int, scratch *[]entry) []byte {
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, epoch)
	dst = binary.AppendUvarint(dst, mark)
	dst = binary.AppendUvarint(dst, included)
	dst = binary.AppendUvarint(dst, numModes)
	dst = binary.AppendUvarint(dst, numMetrics)
	for m := range b.n {
		for _, v := range b.n[m] {
			dst = binary.AppendUvarint(dst, v)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(numDims))
	for d := range b.dims {
		c := &b.dims[d]
		es := c.sorted(*scratch)
		*scratch = es
		other := c.other
		if len(es) > topK {
			for _, e := range es[topK:] {
				other += e.n
			}
			es = es[:topK]
		}
		dst = binary.AppendUvarint(dst, uint64(len(es)))
		for _, e := range es {
			dst = binary.AppendUvarint(dst, uint64(len(e.key)))
			dst = append(dst, e.key...)
			dst = binary.AppendUvarint(dst, e.n)
		}
		dst = binary.AppendUvarint(dst, other)
	}
	if b.hll == nil {
		return binary.AppendUvarint(dst, 0)
	}
	h, err := b.hll.MarshalBinary()
	if err != nil { // only for an uninitialized sketch, which sketch() never makes
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(h)))
	return append(dst, h...)
}

// decoder reads the stored form.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d beyond the value", n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// count reads a count of items, each at least min bytes long, refusing one
// the value cannot hold (a corrupt length must not allocate gigabytes).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = fmt.Errorf("count %d beyond the value", n)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// decodeBucket parses the stored form of a bucket (see appendBinary). The
// result's maps hold copies, not sub-slices of v.
func decodeBucket(kind storage.RollupKind, index uint32, v []byte) (*bucket, error) {
	if len(v) == 0 || v[0] != codecVersion {
		return nil, fmt.Errorf("%w: unknown bucket version", ErrCorrupt)
	}
	d := decoder{b: v[1:]}
	b := newBucket(kind, index)
	b.size = len(v)
	b.epoch = d.uvarint()
	b.mark = d.uvarint()
	b.included = d.uvarint()
	modes, metrics := d.count(1), d.count(1)
	for m := range modes {
		for x := range metrics {
			n := d.uvarint()
			if m < numModes && x < numMetrics {
				b.n[m][x] = n
			}
		}
	}
	dims := d.count(2)
	for i := range dims {
		n := d.count(2)
		var c counter
		if i < int(numDims) && n > 0 {
			c.m = make(map[string]uint64, n)
		}
		for range n {
			k := d.bytes()
			v := d.uvarint()
			if c.m != nil && d.err == nil {
				c.m[string(k)] += v
			}
		}
		c.other = d.uvarint()
		if i < int(numDims) {
			b.dims[i] = c
		}
	}
	if h := d.bytes(); len(h) > 0 && d.err == nil {
		if len(h) < 2 || h[1] != hllPrecision {
			return nil, fmt.Errorf("%w: hyperloglog precision is not %d", ErrCorrupt, hllPrecision)
		}
		b.hll = &hyperloglog.Sketch{}
		if err := b.hll.UnmarshalBinary(h); err != nil {
			return nil, fmt.Errorf("%w: hyperloglog: %w", ErrCorrupt, err)
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, d.err)
	}
	return b, nil
}
