package storage

import (
	"context"
	"crypto/rand"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestEveryPrefixHasALifetime parses the package for key prefixes (string
// constants named prefix… or key…) and checks that prefixLifetimes says how
// each one ends, and that every byPurge prefix has a purger.
func TestEveryPrefixHasALifetime(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, "prefix") && !strings.HasPrefix(n.Name, "key") {
						continue
					}
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					found[n.Name] = v
				}
			}
		}
	}
	if len(found) < 15 {
		t.Fatalf("found only %d prefixes: %v", len(found), found)
	}
	for name, v := range found {
		lt, ok := prefixLifetimes[v]
		if !ok {
			t.Errorf("%s (%q) has no row in prefixLifetimes: say how its keys end (TTL, PurgeExpired, or kept and why)", name, v)
			continue
		}
		if lt.how == byPurge {
			has := false
			for _, p := range purgers {
				has = has || p.prefix == v
			}
			if !has {
				t.Errorf("%s (%q) is byPurge but has no purger", name, v)
			}
		}
	}
}

func openPurge(t *testing.T, dir string, r Retention) *Store {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := Open(Config{Dir: dir, VaultKey: key, Retention: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func keyState(t *testing.T, s *Store, key []byte) (bool, uint64) {
	t.Helper()
	var ok bool
	var exp uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		ok, exp = true, item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok, exp
}

func put(t *testing.T, s *Store, key, value []byte, expiresAt uint64) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		e := badger.NewEntry(key, value)
		e.ExpiresAt = expiresAt
		return txn.SetEntry(e)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPurgeExpired(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := openPurge(t, t.TempDir(), Retention{PluginKV: 10 * 24 * time.Hour, Requests: 365 * 24 * time.Hour})

	// Pending segment changes: only the one older than 30 days goes.
	change := func(at time.Time) []byte {
		b, _ := proto.Marshal(&vigiev1.SegmentChange{Site: "demo", Subject: "s", Segment: "x", AtMs: at.UnixMilli()})
		return b
	}
	put(t, s, pendingKey(1), change(now.Add(-31*24*time.Hour)), 0)
	put(t, s, pendingKey(2), change(now.Add(-time.Hour)), 0)
	put(t, s, pendingKey(3), []byte("not a change"), 0)

	// Plugin KV: written without TTL (before the bound existed), with a
	// short TTL, and through KVPut now.
	put(t, s, kvKey("crm", "forever"), []byte("v1"), 0)
	short := uint64(now.Add(time.Hour).Unix())
	put(t, s, kvKey("crm", "short"), []byte("v2"), short)
	if err := s.KVPut(ctx, "crm", "put", []byte("v3"), 0); err != nil {
		t.Fatal(err)
	}
	if _, exp := keyState(t, s, kvKey("crm", "put")); exp == 0 || exp > uint64(now.Add(10*24*time.Hour+time.Minute).Unix()) {
		t.Errorf("KVPut without ttl expires at %d, want the 10-day bound", exp)
	}

	// Vault data keys: one subject keeps traits, the other's expired.
	if _, err := s.Append(ctx, []Record{
		{Site: "demo", ID: "e1", Time: now, Type: "identify", Subject: "kept", TTL: time.Hour, Data: []byte("x"), Topic: "t", Vault: []byte(`{"email":"a@b.c"}`)},
		{Site: "demo", ID: "e2", Time: now, Type: "identify", Subject: "gone", TTL: time.Hour, Data: []byte("x"), Topic: "t", Vault: []byte(`{"email":"d@e.f"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	put(t, s, appendTraitsKey(nil, "gone", "demo"), []byte("expired"), uint64(now.Add(-time.Second).Unix()))

	// Privacy requests: completed long ago (text and ms), recently, never.
	old := now.Add(-400 * 24 * time.Hour)
	put(t, s, []byte(prefixRequest+"a"), []byte(`{"id":"a","completed_at":"`+old.Format(time.RFC3339)+`"}`), 0)
	put(t, s, []byte(prefixRequest+"b"), []byte(`{"id":"b","completed_at":`+strconv.FormatInt(old.UnixMilli(), 10)+`}`), 0)
	put(t, s, []byte(prefixRequest+"c"), []byte(`{"id":"c","completed_at":"`+now.Add(-24*time.Hour).Format(time.RFC3339)+`"}`), 0)
	put(t, s, []byte(prefixRequest+"d"), []byte(`{"id":"d","status":"running"}`), 0)

	rep, err := s.PurgeExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := PurgeReport{prefixPending: 2, prefixKV: 1, prefixDataKey: 1, prefixRequest: 2}
	for k, v := range want {
		if rep[k] != v {
			t.Errorf("report %s = %d, want %d (report %v)", k, rep[k], v, rep)
		}
	}
	checks := []struct {
		key  []byte
		want bool
	}{
		{pendingKey(1), false}, {pendingKey(2), true}, {pendingKey(3), false},
		{kvKey("crm", "forever"), true}, {dataKeyKey("kept"), true}, {dataKeyKey("gone"), false},
		{[]byte(prefixRequest + "a"), false}, {[]byte(prefixRequest + "b"), false},
		{[]byte(prefixRequest + "c"), true}, {[]byte(prefixRequest + "d"), true},
	}
	for _, c := range checks {
		if got, _ := keyState(t, s, c.key); got != c.want {
			t.Errorf("%q exists = %v, want %v", c.key, got, c.want)
		}
	}
	bound := uint64(now.Add(10*24*time.Hour).Unix()) + 1
	if _, exp := keyState(t, s, kvKey("crm", "forever")); exp != bound {
		t.Errorf("KV entry without TTL now expires at %d, want %d", exp, bound)
	}
	if v, err := s.KVGet(ctx, "crm", "forever"); err != nil || string(v) != "v1" {
		t.Errorf("KV value after bounding: %q, %v", v, err)
	}
	if _, exp := keyState(t, s, kvKey("crm", "short")); exp != short {
		t.Errorf("short TTL changed to %d", exp)
	}
	if tr, err := s.VaultTraits("kept", "demo"); err != nil || !strings.Contains(string(tr), "a@b.c") {
		t.Errorf("kept subject's traits: %q, %v", tr, err)
	}

	// A year and more later, the recent request goes too; a second run
	// finds nothing else.
	rep, err = s.PurgeExpired(ctx, now.Add(366*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep[prefixRequest] != 1 {
		t.Errorf("later purge: %v", rep)
	}
}

// A sweep over more keys than one chunk visits every key once.
func TestPurgeChunks(t *testing.T) {
	s := openPurge(t, t.TempDir(), Retention{})
	old, _ := proto.Marshal(&vigiev1.SegmentChange{Site: "demo", AtMs: time.Now().Add(-60 * 24 * time.Hour).UnixMilli()})
	n := sweepChunk*2 + 17
	err := s.db.Update(func(txn *badger.Txn) error {
		for i := range n {
			if err := txn.Set(pendingKey(uint64(i)), old); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.PurgeExpired(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rep[prefixPending] != n {
		t.Fatalf("purged %d of %d", rep[prefixPending], n)
	}
}

// The periodic purge runs at Open and stops with Close.
func TestPurgeLoop(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := Open(Config{Dir: dir, VaultKey: key})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := proto.Marshal(&vigiev1.SegmentChange{Site: "demo", AtMs: time.Now().Add(-60 * 24 * time.Hour).UnixMilli()})
	put(t, s, pendingKey(7), old, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Dir: dir, VaultKey: key, PurgeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := keyState(t, s, pendingKey(7)); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the purge at Open did not run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with the purge loop running")
	}
	_ = os.RemoveAll(dir)
}
