package storage_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// mapVault is a SharedVault over a map, filled by publish from a store's
// outbox as the bus would put the messages into KV VIGIE_VAULT (the real
// bucket is tested in proxy: TestClusterVault*).
type mapVault struct {
	mu      sync.Mutex
	entries map[string][]byte
}

func (v *mapVault) PutMessage(site, subject string, entry []byte) storage.Message {
	return storage.Message{Topic: "$KV.VAULT." + site + "." + subject, ID: "put-" + site + "-" + subject + "-" + string(entry[len(entry)-8:]), Data: entry}
}

func (v *mapVault) DeleteMessage(site, subject string) storage.Message {
	return storage.Message{Topic: "$KV.VAULT." + site + "." + subject, ID: "del-" + site + "-" + subject, KVDelete: true}
}

func (v *mapVault) Get(_ context.Context, site, subject string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.entries[site+"."+subject]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return e, nil
}

// publish applies s's outbox to v (in order) and acknowledges it; it
// returns the vault messages' topics, "del " before a delete's.
func (v *mapVault) publish(t *testing.T, s *storage.Store) []string {
	t.Helper()
	items, err := s.Outbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.entries == nil {
		v.entries = map[string][]byte{}
	}
	var topics []string
	var keys [][]byte
	for _, it := range items {
		keys = append(keys, it.Key)
		k, ok := strings.CutPrefix(it.Topic, "$KV.VAULT.")
		if !ok {
			topics = append(topics, it.Topic)
			continue
		}
		if it.KVDelete {
			delete(v.entries, k)
			topics = append(topics, "del "+it.Topic)
			continue
		}
		v.entries[k] = it.Data
		topics = append(topics, it.Topic)
	}
	if err := s.AckOutbox(keys); err != nil {
		t.Fatal(err)
	}
	return topics
}

// TestSharedVault: two stores sharing a vault key and a SharedVault (two
// cluster nodes). Each step acts on the first and checks what its outbox
// published and what the second resolves; a store without a SharedVault
// publishes no vault message and resolves only its own traits.
func TestSharedVault(t *testing.T) {
	ctx := context.Background()
	key := newKey()
	sv := &mapVault{}
	one := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: key, SharedVault: sv})
	two := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: key, SharedVault: sv})
	alone := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: key})
	const site, subj = "demo", "subjA"
	const email, newEmail = "ana@example.org", "ana.new@example.org"
	identify := func(id, traits string) storage.Record {
		r := rec(site, id, base, subj, "")
		r.Vault = []byte(traits)
		r.TTL = time.Hour
		return r
	}
	steps := []struct {
		name   string
		act    func(t *testing.T)
		topics []string // the first store's published topics
		want   string   // what the second resolves ("" none)
	}{
		{"identify", func(t *testing.T) { mustAppend(t, one, identify("e1", `{"email":"`+email+`"}`)) },
			[]string{"$KV.VAULT.demo.subjA", "vigie.events.demo.track"}, email},
		{"rectify", func(t *testing.T) {
			msg := storage.Message{Topic: "vigie.privacy.demo.rectify", ID: "r1", Data: []byte("x")}
			if err := one.ReplaceTraits(ctx, site, subj, []byte(`{"email":"`+newEmail+`"}`), msg); err != nil {
				t.Fatal(err)
			}
		}, []string{"$KV.VAULT.demo.subjA", "vigie.privacy.demo.rectify"}, newEmail},
		{"erase", func(t *testing.T) {
			if _, err := one.EraseSubjects(ctx, site, []string{subj}); err != nil {
				t.Fatal(err)
			}
		}, []string{"del $KV.VAULT.demo.subjA"}, ""},
		{"identify again", func(t *testing.T) { mustAppend(t, one, identify("e2", `{"email":"`+email+`"}`)) },
			[]string{"$KV.VAULT.demo.subjA", "vigie.events.demo.track"}, email},
		{"shred", func(t *testing.T) {
			if err := one.ShredSubject(ctx, subj); err != nil {
				t.Fatal(err)
			}
		}, []string{"del $KV.VAULT.demo.subjA"}, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.act(t)
			var got []string
			for _, tp := range sv.publish(t, one) {
				if !strings.Contains(tp, "segment") && !strings.Contains(tp, "profile") {
					got = append(got, tp)
				}
			}
			if strings.Join(got, ",") != strings.Join(st.topics, ",") {
				t.Fatalf("published %v, want %v", got, st.topics)
			}
			for k, e := range sv.entries {
				if bytes.Contains(e, []byte("@example.org")) {
					t.Fatalf("shared entry %s holds the traits in clear", k)
				}
			}
			traits, err := two.ResolveTraits(ctx, subj, site)
			switch {
			case st.want == "" && !errors.Is(err, storage.ErrNotFound):
				t.Fatalf("the other store resolved %s, %v; want ErrNotFound", traits, err)
			case st.want != "" && (err != nil || !bytes.Contains(traits, []byte(st.want))):
				t.Fatalf("the other store resolved %s, %v; want %s", traits, err, st.want)
			}
			if _, err := two.VaultTraits(subj, site); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the other store's own vault: %v, want ErrNotFound", err)
			}
		})
	}
	t.Run("single node", func(t *testing.T) {
		mustAppend(t, alone, identify("e3", `{"email":"`+email+`"}`))
		items, err := alone.Outbox(ctx, 100)
		if err != nil || len(items) != 1 {
			t.Fatalf("outbox %d item(s), %v; want the event only", len(items), err)
		}
		if _, err := alone.ResolveTraits(ctx, "other", site); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown subject: %v, want ErrNotFound", err)
		}
		if traits, err := alone.ResolveTraits(ctx, subj, site); err != nil || !bytes.Contains(traits, []byte(email)) {
			t.Fatalf("own traits: %s, %v", traits, err)
		}
	})
	t.Run("corrupt entry", func(t *testing.T) {
		sv.mu.Lock()
		sv.entries[site+".subjB"] = []byte{1, 0, 99, 1, 2}
		sv.mu.Unlock()
		if _, err := two.ResolveTraits(ctx, "subjB", site); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("corrupt entry: %v, want ErrCorrupt", err)
		}
	})
}
