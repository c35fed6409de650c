package keyring

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenCreatesOnceWith0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	kr, created, err := Open(dir)
	if err != nil || !created {
		t.Fatalf("Open = %v, created %v", err, created)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	again, created, err := Open(dir)
	if err != nil || created {
		t.Fatalf("reopen = %v, created %v", err, created)
	}
	if again.AdminToken != kr.AdminToken || string(again.Keys[0].Secret) != string(kr.Keys[0].Secret) {
		t.Fatal("reopened keyring differs")
	}
	if !again.CheckAdminToken(kr.AdminToken) || again.CheckAdminToken(kr.AdminToken+"x") || again.CheckAdminToken("") {
		t.Fatal("CheckAdminToken wrong")
	}
}

func TestRotateRetire(t *testing.T) {
	dir := t.TempDir()
	kr, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := kr.Keys[0].ID
	k, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if k.ID == old || kr.Active()[0].ID != k.ID || len(kr.Active()) != 2 {
		t.Fatalf("rotate: active %v", kr.Active())
	}
	if err := kr.Retire(k.ID); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("retiring active key: %v", err)
	}
	if err := kr.Retire("nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retire unknown: %v", err)
	}
	if err := kr.Retire(old); err != nil {
		t.Fatal(err)
	}
	re, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if act := re.Active(); len(act) != 1 || act[0].ID != k.ID {
		t.Fatalf("after reopen active = %v", act)
	}
}

func TestOpenRejectsCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Open incomplete keyring: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir); err == nil {
		t.Fatal("Open corrupt keyring: no error")
	}
}
