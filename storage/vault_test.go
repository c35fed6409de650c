package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestVaultTraits(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true})
	identify := func(subject, site, traits string) {
		r := rec(site, fmt.Sprintf("%s-%s-%d", subject, site, time.Now().UnixNano()), base, subject, "")
		r.Vault = []byte(traits)
		mustAppend(t, s, r)
	}
	identify("s1", "a", `{"email":"old@example.com"}`)
	identify("s1", "a", `{"email":"new@example.com"}`) // newest wins
	identify("s1", "b", `{"email":"b@example.com"}`)
	identify("s2", "a", `{"email":"two@example.com"}`)
	tests := []struct {
		subject, site string
		want          string
		err           error
	}{
		{"s1", "a", `{"email":"new@example.com"}`, nil},
		{"s1", "b", `{"email":"b@example.com"}`, nil},
		{"s2", "a", `{"email":"two@example.com"}`, nil},
		{"s2", "b", "", storage.ErrNotFound},
		{"s3", "a", "", storage.ErrNotFound},
		{"", "a", "", storage.ErrInvalidKey},
		{"s\x00", "a", "", storage.ErrInvalidKey},
	}
	for _, tt := range tests {
		got, err := s.VaultTraits(tt.subject, tt.site)
		if !errors.Is(err, tt.err) || string(got) != tt.want {
			t.Errorf("VaultTraits(%q,%q) = %q, %v; want %q, %v", tt.subject, tt.site, got, err, tt.want, tt.err)
		}
	}
	// The cleartext never appears in any stored key or value.
	err := s.ScanAllVersions(func(k, v []byte) error {
		if bytes.Contains(v, []byte("@example.com")) || bytes.Contains(k, []byte("@example.com")) {
			return fmt.Errorf("cleartext trait under key %q", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestShredSubject(t *testing.T) {
	dir, key := t.TempDir(), newKey()
	const email = "ada.lovelace@example.com"
	identify := func(s *storage.Store, site, id string) {
		r := rec(site, id, base, "victim", "")
		r.Vault = []byte(`{"email":"` + email + `","id":"` + id + `"}`)
		mustAppend(t, s, r)
	}
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	for i := range 20 {
		mustAppend(t, s,
			rec("a", fmt.Sprintf("victim%02d", i), base.Add(time.Duration(i)*time.Second), "victim", ""),
			rec("a", fmt.Sprintf("other%02d", i), base.Add(time.Duration(i)*time.Second), "other", ""))
	}
	identify(s, "a", "v1")
	identify(s, "b", "v2")
	o := rec("a", "otherT", base, "other", "")
	o.Vault = []byte(`{"email":"keep@example.com"}`)
	mustAppend(t, s, o)
	// Reopen so that versions sit in SST files, then write newer versions
	// that sit in the memtable.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	identify(s, "a", "v3")
	identify(s, "a", "v4")

	secrets := victimSecrets(t, s, "victim")
	if len(secrets) < 4 { // data key + traits versions
		t.Fatalf("found %d stored vault values before shred, want >= 4", len(secrets))
	}
	needles := append([][]byte{[]byte(email)}, secrets...)
	if found := grepFiles(t, dir, secrets); len(found) == 0 {
		t.Fatal("vault ciphertexts not found in raw files before shred: the raw-file check would prove nothing")
	}

	// Shred while other subjects keep writing: writes must wait, not fail.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Append(context.Background(), []storage.Record{rec("c", fmt.Sprint(i), base, "bystander", "")}); err != nil {
				t.Errorf("append during shred: %v", err)
				return
			}
		}
	})
	err := s.ShredSubject(context.Background(), "victim")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	for _, site := range []string{"a", "b"} {
		if _, err := s.VaultTraits("victim", site); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("victim traits on %s after shred: %v", site, err)
		}
	}
	if ev, err := s.SubjectEvents(context.Background(), "victim"); err != nil || len(ev) != 0 {
		t.Fatalf("victim events after shred: %d, %v", len(ev), err)
	}
	for _, e := range allEvents(t, s, "a") {
		if bytes.Contains([]byte(e), []byte("victim")) || bytes.Contains([]byte(e), []byte(":v")) {
			t.Fatalf("victim event %q survived", e)
		}
	}
	if tr, err := s.VaultTraits("other", "a"); err != nil || !bytes.Contains(tr, []byte("keep@example.com")) {
		t.Fatalf("bystander traits: %q, %v", tr, err)
	}
	if ev, _ := s.SubjectEvents(context.Background(), "other"); len(ev) != 21 {
		t.Fatalf("bystander has %d events, want 21", len(ev))
	}
	// Every version Badger still holds is free of the victim's vault.
	err = s.ScanAllVersions(func(k, v []byte) error {
		for _, p := range []string{"v/k/victim\x00", "v/t/victim\x00", "s/victim\x00"} {
			if bytes.HasPrefix(k, []byte(p)) {
				return fmt.Errorf("key %q survived", k)
			}
		}
		for _, n := range needles {
			if bytes.Contains(v, n) {
				return fmt.Errorf("secret survived under %q", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found := grepFiles(t, dir, needles); len(found) > 0 {
		t.Fatalf("needles %v found in raw files while open", found)
	}
	if err := s.ShredSubject(context.Background(), "victim"); err != nil {
		t.Fatalf("second shred: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := grepFiles(t, dir, needles); len(found) > 0 {
		t.Fatalf("needles %v found in raw files after close", found)
	}
	if err := s.ShredSubject(context.Background(), "victim"); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("shred after close: %v", err)
	}
}

// victimSecrets returns every stored value under the victim's vault keys.
func victimSecrets(t *testing.T, s *storage.Store, subject string) [][]byte {
	t.Helper()
	var out [][]byte
	err := s.ScanAllVersions(func(k, v []byte) error {
		if bytes.HasPrefix(k, []byte("v/k/"+subject+"\x00")) || bytes.HasPrefix(k, []byte("v/t/"+subject+"\x00")) {
			if len(v) > 0 {
				out = append(out, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// grepFiles reports which needles occur in any file under dir.
func grepFiles(t *testing.T, dir string, needles [][]byte) []int {
	t.Helper()
	var found []int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		for i, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
