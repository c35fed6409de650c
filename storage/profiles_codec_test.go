package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// sameProfile reports whether a and b are equal field by field.
func sameProfile(a, b *Profile) bool {
	if !proto.Equal(a.Campaign, b.Campaign) {
		return false
	}
	ca, cb := *a, *b
	ca.Campaign, cb.Campaign = nil, nil
	return reflect.DeepEqual(ca, cb)
}

// codecProfiles are profiles every codec must round-trip exactly.
func codecProfiles() map[string]*Profile {
	big := &Profile{Site: "site", Subject: "subj", FirstSeenMs: 1, LastSeenMs: 3_600_000 * 720,
		Counters: map[string][]Bucket{}}
	for k := range 20 {
		var bs []Bucket
		for h := int64(0); h < 720; h += int64(k + 1) {
			bs = append(bs, Bucket{Hour: h, N: h%7 + 1})
		}
		big.Counters[fmt.Sprint("track\x00event-", k)] = bs
	}
	return map[string]*Profile{
		"empty": {Site: "site", Subject: "subj"},
		"full": {Site: "site", Subject: "subj", FirstSeenMs: -5, LastSeenMs: 1 << 50,
			Purposes: []string{"analytics", "marketing"},
			Counters: map[string][]Bucket{"track\x00buy": {{Hour: -3, N: 1}, {Hour: 10, N: 1 << 40}}, "identify\x00": {{Hour: 7, N: 2}}},
			Campaign: &vigiev1.Campaign{Name: "n", Source: "s", Medium: "m", Term: "t", Content: "c"},
			Country:  "FR", Score: -42, Segments: []string{"a", "vip"}, Attributes: json.RawMessage(`{"x":[1,2],"é":"ü"}`)},
		"empty campaign": {Site: "site", Subject: "subj", Campaign: &vigiev1.Campaign{}},
		"many buckets":   big,
	}
}

func TestProfileCodecRoundTrip(t *testing.T) {
	for name, p := range codecProfiles() {
		v, err := encodeProfile(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v[0] != profileV1 {
			t.Fatalf("%s: version byte %#x", name, v[0])
		}
		got, err := decodeProfile(v, p.Site, p.Subject)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameProfile(got, p) {
			t.Fatalf("%s: round trip\n%+v\nvs %+v", name, got, p)
		}
		// Every truncation is rejected as corrupt.
		for i := range len(v) {
			if _, err := decodeProfile(v[:i], "site", "subj"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: truncated to %d: %v", name, i, err)
			}
		}
	}
}

// TestProfileLegacyJSON: profiles written as JSON before the binary codec
// still decode, and the next write converts them.
func TestProfileLegacyJSON(t *testing.T) {
	// Bytes as the JSON codec wrote them.
	legacy := []byte(`{"f":3600000,"l":7200000,"p":["analytics"],"c":{"track\u0000buy":[{"h":1,"n":2},{"h":2,"n":1}]},` +
		`"cp":{"n":"spring","s":"news"},"co":"FR","sc":3,"sg":["vip"],"a":{"x":1}}`)
	want := &Profile{Site: "site", Subject: "u1", FirstSeenMs: 3_600_000, LastSeenMs: 7_200_000, Purposes: []string{"analytics"},
		Counters: map[string][]Bucket{"track\x00buy": {{1, 2}, {2, 1}}}, Campaign: &vigiev1.Campaign{Name: "spring", Source: "news"},
		Country: "FR", Score: 3, Segments: []string{"vip"}, Attributes: json.RawMessage(`{"x":1}`)}
	got, err := decodeProfile(legacy, "site", "u1")
	if err != nil || !sameProfile(got, want) {
		t.Fatalf("legacy decode: %v\n%+v\nwant %+v", err, got, want)
	}
	for name, p := range codecProfiles() {
		if name == "empty campaign" {
			continue // JSON omits an empty campaign object
		}
		v, err := encodeProfileJSON(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeProfile(v, p.Site, p.Subject)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := diffProfile(got, p); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
	}
	// Through the store: a JSON profile is read, updated and rewritten.
	ctx := context.Background()
	s := openProfiles(t, "")
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(profileKey("site", "u1"), legacy) }); err != nil {
		t.Fatal(err)
	}
	p, _, err := s.ObserveEvent(ctx, pev("e1", "u1", "track", "buy", time.UnixMilli(7_200_000)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Count("track", "buy", 24*time.Hour, 7_200_000) != 4 || p.Score != 3 || p.Country != "FR" || string(p.Attributes) != `{"x":1}` {
		t.Fatalf("after observe: %+v", p)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(profileKey("site", "u1"))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if v[0] != profileV1 {
				return fmt.Errorf("rewritten as %q", v)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestProfileCodecInvalidUTF8(t *testing.T) {
	p := &Profile{Site: "site", Subject: "subj", Purposes: []string{"a\xffb"}, Country: "\xfe",
		Counters: map[string][]Bucket{"track\x00\xff": {{1, 1}}}, Segments: []string{"ok"}}
	v, _ := encodeProfile(p)
	got, err := decodeProfile(v, "site", "subj")
	if err != nil {
		t.Fatal(err)
	}
	for k := range got.Counters {
		if !utf8.ValidString(k) {
			t.Fatalf("counter key %q", k)
		}
	}
	if !utf8.ValidString(got.Purposes[0]) || !utf8.ValidString(got.Country) {
		t.Fatalf("invalid UTF-8 kept: %+v", got)
	}
}

// FuzzProfileCodec decodes arbitrary bytes after the version byte: no
// panic, only ErrCorrupt, and what decodes re-encodes to an equal profile.
func FuzzProfileCodec(f *testing.F) {
	for _, p := range codecProfiles() {
		v, _ := encodeProfile(p)
		f.Add(v[1:])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 2, 'k', 'k', 200, 200, 200, 200, 200, 200, 200, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := append([]byte{profileV1}, b...)
		p, err := decodeProfile(v, "site", "subj")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		_ = p.Proto(0)
		enc, err := encodeProfile(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := decodeProfile(enc, "site", "subj")
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !sameProfile(p, p2) {
			t.Fatalf("codec not stable:\n%+v\n%+v", p, p2)
		}
	})
}

// BenchmarkProfileCodec decodes and re-encodes a profile with 20 counters
// of 720 hours (up to 720 buckets each), in JSON and in the binary form.
func BenchmarkProfileCodec(b *testing.B) {
	p := codecProfiles()["many buckets"]
	codecs := []struct {
		name string
		enc  func(*Profile) ([]byte, error)
	}{{"json", encodeProfileJSON}, {"binary", encodeProfile}}
	for _, c := range codecs {
		b.Run(c.name, func(b *testing.B) {
			v, _ := c.enc(p)
			b.ReportMetric(float64(len(v)), "bytes")
			b.ReportAllocs()
			for b.Loop() {
				q, err := decodeProfile(v, "site", "subj")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.enc(q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
