package streams

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestBucketConfigsApplySettings(t *testing.T) {
	cs := BucketConfigs(Settings{Replicas: 3, DedupTTL: time.Hour, ProfileTTL: 2 * time.Hour, ImportsTTL: 3 * time.Hour})
	if len(cs) != len(AllBuckets()) {
		t.Fatalf("%d configs for %d buckets", len(cs), len(AllBuckets()))
	}
	for _, c := range cs {
		if c.Replicas != 3 || c.History != 1 || c.Storage != jetstream.FileStorage {
			t.Errorf("%s: replicas %d history %d storage %v", c.Bucket, c.Replicas, c.History, c.Storage)
		}
		want := map[string]time.Duration{BucketDedup: time.Hour, BucketProfiles: 2 * time.Hour, BucketImports: 3 * time.Hour, BucketClicks: ClicksTTL, BucketResponse: ResponseTTL}[c.Bucket]
		if c.TTL != want {
			t.Errorf("%s: TTL %s, want %s", c.Bucket, c.TTL, want)
		}
	}
	if d := BucketConfigs(Settings{}, BucketDedup)[0]; d.TTL != DefaultDedupTTL || d.Replicas != DefaultReplicas {
		t.Errorf("defaults: %+v", d)
	}
}

func TestKVSubjectsBelongToTheirBucket(t *testing.T) {
	for _, tc := range []struct{ subject, stream string }{
		{KVSubject(BucketLedger, "demo."+KeyToken("abc_-Z9")), "KV_VIGIE_LEDGER"},
		{KVSubject(BucketVault, "demo.x"), "KV_VIGIE_VAULT"},
		{KVSubject("OTHER", "k"), ""},
		{"$KV.VIGIE_LEDGER", ""},
	} {
		if got := StreamOf(tc.subject); got != tc.stream {
			t.Errorf("StreamOf(%q) = %q, want %q", tc.subject, got, tc.stream)
		}
	}
	for in, want := range map[string]string{"AbZ09_-": "AbZ09_-", "a.b": "=612e62", "": "=", "é": "=c3a9"} {
		if got := KeyToken(in); got != want {
			t.Errorf("KeyToken(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"AbZ09_-", "01ABC.node-b", "é"} {
		if got, ok := TokenValue(KeyToken(in)); !ok || got != in {
			t.Errorf("TokenValue(KeyToken(%q)) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "=", "=6", "=zz", "a.b"} {
		if got, ok := TokenValue(bad); ok {
			t.Errorf("TokenValue(%q) = %q, want not a token", bad, got)
		}
	}
}

func TestPartitionsSpreadAndFilter(t *testing.T) {
	const n = 16
	seen := map[int]int{}
	for i := 0; i < 1600; i++ {
		p := Partition("demo", "subject"+string(rune('a'+i%26))+string(rune('a'+i/26)), n)
		if p < 0 || p >= n {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p]++
	}
	for p := 0; p < n; p++ {
		if seen[p] < 50 { // 100 expected
			t.Errorf("partition %d got %d of 1600 subjects", p, seen[p])
		}
	}
	if Partition("demo", "", n) != 0 || Partition("demo", "x", 1) != 0 {
		t.Error("anonymous events and a single partition must map to 0")
	}
	if Partition("demo", "x", n) != Partition("demo", "x", n) {
		t.Error("partition not deterministic")
	}
	s := EnrichedPartitionSubject("demo", 7, "track")
	if s != "vigie.enriched.demo.7.track" || StreamOf(s) != Enriched {
		t.Fatalf("partition subject %q in %q", s, StreamOf(s))
	}
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{EnrichedFilter("demo", "track", true, "7"), true},
		{EnrichedFilter("*", "*", true, "*"), true},
		{EnrichedFilter("demo", "track", true, "6"), false},
		{EnrichedFilter("demo", "track", false, ""), false}, // single-node filters do not see partitioned subjects
	} {
		if got := matchSubject(tc.filter, s); got != tc.want {
			t.Errorf("filter %q on %q: %v, want %v", tc.filter, s, got, tc.want)
		}
	}
	if !matchSubject(EnrichedFilter("demo", "track", false, ""), EnrichedSubject("demo", "track")) {
		t.Error("single-node filter does not match its subject")
	}
}

func TestDeclarerDeclaresBuckets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := startJS(t)
	d := NewDeclarer(Settings{DedupTTL: time.Minute}, Events).WithBuckets(AllBuckets()...)
	if err := d.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range js.KeyValueStoreNames(ctx).Name() {
		names = append(names, n)
	}
	for _, b := range AllBuckets() {
		if !slices.Contains(names, b) {
			t.Errorf("bucket %s not declared (have %v)", b, names)
		}
	}
	kv, err := js.KeyValue(ctx, BucketDedup)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != time.Minute {
		t.Fatalf("dedup bucket TTL %v, %v", st.TTL(), err)
	}
	// A KV write published like an outbox message lands in its bucket.
	if _, err := js.Publish(ctx, KVSubject(BucketLedger, "demo.s1"), []byte("v"), jetstream.WithExpectStream(StreamOf(KVSubject(BucketLedger, "demo.s1")))); err != nil {
		t.Fatal(err)
	}
	lk, _ := js.KeyValue(ctx, BucketLedger)
	if e, err := lk.Get(ctx, "demo.s1"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("KV entry: %v", err)
	}
}

// TestErasableBucket: VIGIE_VAULT is declared as a KV bucket whose stream
// allows deletes: a value is read and written through the KV API, can be
// securely erased, and declaring again changes nothing.
func TestErasableBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := startJS(t)
	d := NewDeclarer(Settings{}, Events).WithBuckets(BucketVault, BucketLedger)
	if err := d.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, BucketVault)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "demo.s1", []byte("sealed"))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "demo.s1"); err != nil || string(e.Value()) != "sealed" {
		t.Fatalf("get: %v", err)
	}
	st, err := js.Stream(ctx, KVStream(BucketVault))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SecureDeleteMsg(ctx, rev); err != nil {
		t.Fatalf("secure delete: %v", err)
	}
	if _, err := kv.Get(ctx, "demo.s1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after the erasure: %v", err)
	}
	if err := NewDeclarer(Settings{}, Events).WithBuckets(BucketVault).Ensure(ctx, js); err != nil {
		t.Fatalf("declared again: %v", err)
	}
	for _, c := range []struct {
		subject string
		want    bool
	}{
		{KVSubject(BucketVault, "demo.s1"), true},
		{KVSubject(BucketLedger, "demo.s1"), false},
		{KVSubject(BucketProfiles, "3.demo.s1"), false},
		{"vigie.events.demo.track", false},
	} {
		if got := ErasesOnDelete(c.subject); got != c.want {
			t.Errorf("ErasesOnDelete(%s) = %v, want %v", c.subject, got, c.want)
		}
	}
}
