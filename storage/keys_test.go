package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		site, subject, id string
		ms                uint64
	}{
		{"a", "s", "1", 0},
		{"site.example", "pseudo", "01HZX", 1_700_000_000_000},
		{"x", "y", "id\x00with\x00nul", 1<<64 - 1},
	}
	for _, tt := range tests {
		ek := appendEventKey(nil, tt.site, tt.ms, tt.id)
		site, ms, id, ok := parseEventKey(ek)
		if !ok || string(site) != tt.site || ms != tt.ms || string(id) != tt.id {
			t.Errorf("parseEventKey(%q) = %q %d %q %v", ek, site, ms, id, ok)
		}
		if !bytes.HasPrefix(ek, siteEventPrefix(tt.site)) {
			t.Errorf("event key %q lacks its site prefix", ek)
		}
		sk := appendSubjectKey(nil, tt.subject, tt.site, tt.ms, tt.id)
		got, ok := eventKeyFromSubjectKey(nil, sk)
		if !ok || !bytes.Equal(got, ek) {
			t.Errorf("eventKeyFromSubjectKey(%q) = %q, want %q", sk, got, ek)
		}
		if !bytes.HasPrefix(sk, subjectPrefix(tt.subject)) {
			t.Errorf("subject key %q lacks its subject prefix", sk)
		}
		ov := appendOutboxValue(nil, "vigie.events."+tt.site, ek)
		topic, ek2, ok := parseOutboxValue(ov)
		if !ok || string(topic) != "vigie.events."+tt.site || !bytes.Equal(ek2, ek) {
			t.Errorf("parseOutboxValue = %q %q %v", topic, ek2, ok)
		}
		seq, ok := parseOutboxKey(appendOutboxKey(nil, tt.ms))
		if !ok || seq != tt.ms {
			t.Errorf("parseOutboxKey = %d %v", seq, ok)
		}
	}
	// Prefixes of one subject or site never select another that extends it.
	if bytes.HasPrefix(appendSubjectKey(nil, "ab", "s", 1, "i"), subjectPrefix("a")) ||
		bytes.HasPrefix(appendEventKey(nil, "ab", 1, "i"), siteEventPrefix("a")) ||
		bytes.HasPrefix(appendTraitsKey(nil, "ab", "s"), traitsPrefix("a")) ||
		bytes.HasPrefix(dataKeyKey("ab"), dataKeyKey("a")) {
		t.Error("a prefix selects a longer name")
	}
}

func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("e/site\x00\x00\x00\x01\x8b\xcf\xe5h\x00id"))
	f.Add([]byte("s/subj\x00site\x00\x00\x00\x00\x00\x00\x00\x00\x01x"))
	f.Add([]byte("o/\x00\x00\x00\x00\x00\x00\x00\x07"))
	f.Add([]byte{0x05, 'a', 'b'})
	f.Add(appendOutboxMessage(nil, "vigie.privacy.s.consent", "privacy:s:1:01J", []byte("data"), false)[1:])
	f.Add(appendOutboxMessage(nil, "$KV.VIGIE_PROFILES.0.s.x", "profile-del:0.s.x:3", nil, true)[1:])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if site, ms, id, ok := parseEventKey(b); ok {
			if !bytes.Equal(appendEventKey(nil, string(site), ms, string(id)), b) {
				t.Fatalf("event key %q does not round-trip", b)
			}
		}
		if ek, ok := eventKeyFromSubjectKey(nil, b); ok {
			if _, _, _, ok := parseEventKey(ek); !ok {
				t.Fatalf("subject key %q maps to unparsable %q", b, ek)
			}
		}
		if topic, ek, ok := parseOutboxValue(b); ok {
			t2, ek2, ok := parseOutboxValue(appendOutboxValue(nil, string(topic), ek))
			if !ok || !bytes.Equal(t2, topic) || !bytes.Equal(ek2, ek) {
				t.Fatalf("outbox value %q does not round-trip", b)
			}
		}
		if topic, id, data, del, ok := parseOutboxMessage(b); ok {
			t2, id2, data2, del2, ok := parseOutboxMessage(appendOutboxMessage(nil, string(topic), string(id), data, del)[1:])
			if !ok || !bytes.Equal(t2, topic) || !bytes.Equal(id2, id) || !bytes.Equal(data2, data) || del2 != del {
				t.Fatalf("outbox message %q does not round-trip", b)
			}
		}
		if seq, ok := parseOutboxKey(b); ok && !bytes.Equal(appendOutboxKey(nil, seq), b) {
			t.Fatalf("outbox key %q does not round-trip", b)
		}
	})
}

func FuzzEventsCursor(f *testing.F) {
	s, err := Open(Config{InMemory: true, VaultKey: make([]byte, 32)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []Record
	for i := range 10 {
		for _, site := range []string{"a", "b"} {
			recs = append(recs, Record{Site: site, ID: fmt.Sprint(i), Time: base.Add(time.Duration(i) * time.Second),
				Topic: "t", Data: []byte(site + fmt.Sprint(i))})
		}
	}
	if _, err := s.Append(context.Background(), recs); err != nil {
		f.Fatal(err)
	}
	first, _, err := s.Events(context.Background(), "a", 1, "")
	if err != nil || len(first) != 1 {
		f.Fatal(err)
	}
	_, next, _ := s.Events(context.Background(), "a", 4, "")
	f.Add(next)
	f.Add("")
	f.Add("AAAAAAGLz-VoADAx")
	f.Add("!!")
	f.Add(strings.Repeat("_", 40))
	f.Fuzz(func(t *testing.T, cursor string) {
		evs, next, err := s.Events(context.Background(), "a", 3, cursor)
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("cursor %q: unexpected error %v", cursor, err)
		}
		if err != nil {
			return
		}
		if len(evs) > 3 || (next != "" && len(evs) != 3) {
			t.Fatalf("cursor %q: %d events, next %q", cursor, len(evs), next)
		}
		for i, e := range evs {
			if e[0] != 'a' || (i > 0 && string(e) >= string(evs[i-1])) {
				t.Fatalf("cursor %q: events %q not site a newest first", cursor, evs)
			}
		}
		if next != "" {
			if _, _, err := s.Events(context.Background(), "a", 3, next); err != nil {
				t.Fatalf("returned cursor %q rejected: %v", next, err)
			}
		}
	})
}

func TestRollupKeys(t *testing.T) {
	for _, kind := range []RollupKind{RollupHour, RollupDay, RollupDecisions} {
		for _, tt := range []struct {
			site  string
			index uint32
			part  uint64
		}{{"", 0, 0}, {"a", 1, 1}, {"shop.example", 1<<32 - 1, 1<<64 - 1}} {
			k := rollupKey(kind, tt.site, tt.index, tt.part)
			i, p, ok := parseRollupIndex(k, rollupSitePrefix(kind, tt.site))
			if !ok || i != tt.index || p != tt.part {
				t.Errorf("parseRollupIndex(%q) = %d %d %v", k, i, p, ok)
			}
			if _, _, ok := parseRollupIndex(k, rollupSitePrefix(kind, tt.site+"x")); ok {
				t.Errorf("%q parsed under another site's prefix", k)
			}
		}
	}
	// An explicit part 0 is not a key form.
	if _, _, ok := parseRollupIndex(append(rollupKey(RollupHour, "a", 1, 0), make([]byte, 8)...), rollupSitePrefix(RollupHour, "a")); ok {
		t.Error("a zero part parsed")
	}
	// A bucket's parts sort after it and before the next index.
	if bytes.Compare(rollupKey(RollupHour, "a", 5, 0), rollupKey(RollupHour, "a", 5, 1)) >= 0 ||
		bytes.Compare(rollupKey(RollupHour, "a", 5, 1<<64-1), rollupKey(RollupHour, "a", 6, 0)) >= 0 {
		t.Error("rollup parts do not sort between their bucket and the next")
	}
	// Keys sort by index within a site.
	if bytes.Compare(rollupKey(RollupHour, "a", 255, 0), rollupKey(RollupHour, "a", 256, 0)) >= 0 {
		t.Error("rollup keys do not sort by index")
	}
	// No rollup prefix is a prefix of another key family.
	for _, p := range append(rollupPrefixes[1:], prefixRollupMark) {
		for _, q := range []string{prefixEvent, prefixSubject, prefixDedup, prefixOutbox, prefixDataKey, prefixTraits,
			prefixProfile, prefixObserved, prefixApplied, prefixSegSize, prefixSegLog, prefixPending, prefixKV, keySegmentSeq, prefixConsent} {
			if strings.HasPrefix(q, p) || strings.HasPrefix(p, q) {
				t.Errorf("prefix %q collides with %q", p, q)
			}
		}
	}
}
