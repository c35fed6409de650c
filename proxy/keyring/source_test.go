package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/preflight"
)

func TestMasterKeyTextAndPrinting(t *testing.T) {
	mk := newMK(t)
	text := mk.Encode()
	got, err := ParseMasterKey("  " + text + "\n")
	if err != nil || !got.Equal(mk) || got.ID() != mk.ID() || !strings.HasPrefix(mk.ID(), "mk-") {
		t.Fatalf("round trip: %v", err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", mk)
	for _, shown := range []string{fmt.Sprint(mk), fmt.Sprintf("%v %+v %#v %s", mk, mk, mk, mk), logged.String()} {
		if strings.Contains(shown, text[len(MasterKeyPrefix):]) {
			t.Fatalf("master key printed: %s", shown)
		}
	}
	for _, bad := range []string{
		"",
		text[len(MasterKeyPrefix):], // no prefix
		text[:len(text)-2],          // short
		text + "AA",                 // long
		MasterKeyPrefix + strings.Repeat("A", 42) + "=", // padding
		strings.Replace(text, "-", "+", 1) + "x",
	} {
		_, err := ParseMasterKey(bad)
		if !errors.Is(err, ErrBadMasterKey) {
			t.Errorf("ParseMasterKey(%q) = %v", bad, err)
		}
		if err != nil && len(bad) > 12 && strings.Contains(err.Error(), bad[12:]) {
			t.Errorf("error quotes the key text: %v", err)
		}
	}
}

func writeKey(t *testing.T, path string, mode os.FileMode) MasterKey {
	t.Helper()
	mk := newMK(t)
	if err := os.WriteFile(path, []byte(mk.Encode()+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return mk
}

func TestSourceLoad(t *testing.T) {
	dir := t.TempDir()
	fileKey := writeKey(t, filepath.Join(dir, "mk"), 0o600)
	envKey := newMK(t)
	ctx := context.Background()

	cases := []struct {
		name   string
		src    Source
		want   MasterKey
		origin Origin
		err    error
	}{
		{"env", Source{Value: envKey.Encode()}, envKey, FromEnv, nil},
		{"file", Source{File: filepath.Join(dir, "mk")}, fileKey, FromFile, nil},
		{"command without a shell", Source{Command: []string{"cat", filepath.Join(dir, "mk")}}, fileKey, FromCommand, nil},
		{"shell pipeline when asked", Source{Command: []string{"sh", "-c", "cat " + filepath.Join(dir, "mk") + " | tr -d '\\n'"}}, fileKey, FromCommand, nil},
		{"env and file", Source{Value: envKey.Encode(), File: filepath.Join(dir, "mk")}, MasterKey{}, "", ErrAmbiguousSource},
		{"file and command", Source{File: "x", Command: []string{"true"}, TrialDir: dir}, MasterKey{}, "", ErrAmbiguousSource},
		{"nothing, no trial dir", Source{}, MasterKey{}, "", ErrNoMasterKey},
		{"bad env value", Source{Value: "hunter2"}, MasterKey{}, FromEnv, ErrBadMasterKey},
		{"missing file", Source{File: filepath.Join(dir, "none")}, MasterKey{}, FromFile, os.ErrNotExist},
		{"command fails", Source{Command: []string{"false"}}, MasterKey{}, FromCommand, ErrCommand},
		{"command prints garbage", Source{Command: []string{"echo", "nope"}}, MasterKey{}, FromCommand, ErrBadMasterKey},
		{"command too slow", Source{Command: []string{"sleep", "10"}, CommandTimeout: 200 * time.Millisecond}, MasterKey{}, FromCommand, ErrCommand},
		{"trial key missing, no create", Source{TrialDir: filepath.Join(dir, "secrets")}, MasterKey{}, FromTrial, ErrNoMasterKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			mk, ld, err := c.src.Load(ctx, false)
			if !errors.Is(err, c.err) {
				t.Fatalf("Load = %v, want %v", err, c.err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("Load did not respect the command timeout")
			}
			if c.err == nil && (!mk.Equal(c.want) || ld.Origin != c.origin) {
				t.Fatalf("got %s from %s", mk, ld.Origin)
			}
		})
	}
}

func TestCommandErrorRedactsKeys(t *testing.T) {
	mk := newMK(t)
	src := Source{Command: []string{"sh", "-c", "echo 'progress' >&2; echo 'denied: " + mk.Encode() + " is wrong' >&2; exit 3"}}
	_, _, err := src.Load(context.Background(), false)
	if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("error %v should quote the last stderr line", err)
	}
	if strings.Contains(err.Error(), mk.Encode()[len(MasterKeyPrefix):]) || strings.Contains(err.Error(), "progress") {
		t.Fatalf("error reveals a key or more than the last line: %v", err)
	}
}

func TestTrialKeyIsMadeOnceWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vigie-secrets")
	src := Source{TrialDir: dir}
	mk, ld, err := src.Load(context.Background(), true)
	if err != nil || !ld.Created || ld.Origin != FromTrial || ld.Path != filepath.Join(dir, TrialKeyName) {
		t.Fatalf("Load = %v %+v", err, ld)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, ld.Path: 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want %v", path, st.Mode().Perm(), err, want)
		}
	}
	again, ld, err := src.Load(context.Background(), true)
	if err != nil || ld.Created || !again.Equal(mk) {
		t.Fatalf("second Load = %v %+v", err, ld)
	}
	if err := WriteKeyFile(ld.Path, newMK(t)); err == nil {
		t.Fatal("WriteKeyFile replaced an existing key")
	}
}

func statusOf(r preflight.Report, name string) (preflight.Status, string) {
	for _, res := range r {
		if res.Name == name {
			return res.Status, res.Detail
		}
	}
	return -1, ""
}

func TestCustodyAudit(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(root, "etc", "master.key")
	os.MkdirAll(filepath.Dir(good), 0o700)
	writeKey(t, good, 0o600)
	loose := filepath.Join(root, "etc", "loose.key")
	writeKey(t, loose, 0o644)
	groupOnly := filepath.Join(root, "etc", "group.key")
	writeKey(t, groupOnly, 0o640)
	inData := filepath.Join(data, "master.key")
	writeKey(t, inData, 0o600)
	// A path that looks outside but resolves into the data dir.
	link := filepath.Join(root, "link-to-data")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	tokLoose := filepath.Join(root, "etc", "token")
	os.WriteFile(tokLoose, []byte("chosen-token-0123456789"), 0o644)
	os.Chmod(tokLoose, 0o644)
	t.Chdir(root)

	const (
		src, loc, mode, tok = "master key source", "master key location", "master key file mode", "admin token file"
		P, W, F             = preflight.Pass, preflight.Warn, preflight.Fail
	)
	cases := []struct {
		name  string
		c     Custody
		check string
		lax   preflight.Status // Strict false
		prod  preflight.Status // Strict true
	}{
		{"good file", Custody{Source: Source{File: good}}, loc, P, P},
		{"good file mode", Custody{Source: Source{File: good}}, mode, P, P},
		{"file inside data_dir", Custody{Source: Source{File: inData}}, loc, W, F},
		{"file inside data_dir through a symlink", Custody{Source: Source{File: filepath.Join(link, "master.key")}}, loc, W, F},
		{"file inside data_dir by a relative path", Custody{Source: Source{File: "data/../data/master.key"}}, loc, W, F},
		{"data_dir given through a symlink", Custody{Source: Source{File: inData}, DataDir: link}, loc, W, F},
		{"world-readable file", Custody{Source: Source{File: loose}}, mode, W, F},
		{"group-readable file", Custody{Source: Source{File: groupOnly}}, mode, W, F},
		{"missing file", Custody{Source: Source{File: filepath.Join(root, "none")}}, mode, F, F},
		{"no source: trial key, never in production", Custody{Source: Source{TrialDir: filepath.Join(root, "vigie-secrets")}}, src, P, F},
		{"no source, no trial", Custody{}, src, F, F},
		{"two sources", Custody{Source: Source{Value: "x", File: good}}, src, F, F},
		{"env", Custody{Source: Source{Value: "x"}}, loc, P, P},
		{"trial dir inside data_dir", Custody{Source: Source{TrialDir: filepath.Join(data, "secrets")}}, loc, F, -1},
		{"data_dir inside trial dir", Custody{Source: Source{TrialDir: root}}, loc, F, -1},
		{"data_dir is the trial dir", Custody{Source: Source{TrialDir: "./data"}}, loc, F, -1},
		{"world-readable token file", Custody{Source: Source{File: good}, AdminTokenFile: tokLoose}, tok, W, F},
		{"token file inside data_dir", Custody{Source: Source{File: good}, AdminTokenFile: inData}, tok, W, F},
		{"good token file", Custody{Source: Source{File: good}, AdminTokenFile: good}, tok, P, P},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.c.DataDir == "" {
				c.c.DataDir = data
			}
			for _, strict := range []bool{false, true} {
				want := c.lax
				if strict {
					want = c.prod
				}
				c.c.Strict = strict
				got, detail := statusOf(c.c.Audit(), c.check)
				if got != want {
					t.Errorf("strict %v: %s = %v (%s), want %v", strict, c.check, got, detail, want)
				}
			}
		})
	}
}
