package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/preflight"
)

// custodySetup is a directory with a data dir, a good key file outside it,
// and a configuration file naming them.
type custodySetup struct {
	root, data, keyFile, config string
	mk                          keyring.MasterKey
}

func newCustody(t *testing.T, extra string) custodySetup {
	t.Helper()
	root := t.TempDir()
	t.Chdir(root)
	c := custodySetup{root: root, data: filepath.Join(root, "data"), keyFile: filepath.Join(root, "etc", "master.key")}
	if err := os.MkdirAll(filepath.Dir(c.keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	c.mk = mk
	if err := keyring.WriteKeyFile(c.keyFile, mk); err != nil {
		t.Fatal(err)
	}
	c.config = writeConfig(t, root, "data_dir: "+c.data+"\n"+extra)
	return c
}

func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "vigie.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckAndProductionRefuse: `vigie check` and a production start
// refuse each broken custody rule with a message naming it, and pass a good
// setup.
func TestCheckAndProductionRefuse(t *testing.T) {
	cases := []struct {
		name string
		// setup returns the configuration's keys section and env.
		setup func(t *testing.T, c custodySetup) (yaml string, env map[string]string)
		// failing is the check that must fail ("" for none).
		failing string
	}{
		{"good key file", func(t *testing.T, c custodySetup) (string, map[string]string) {
			return "keys: {master_key_file: " + c.keyFile + "}\n", nil
		}, ""},
		{"good env key", func(t *testing.T, c custodySetup) (string, map[string]string) {
			return "", map[string]string{"VIGIE_MASTER_KEY": c.mk.Encode()}
		}, ""},
		{"good command", func(t *testing.T, c custodySetup) (string, map[string]string) {
			return "keys: {master_key_command: [cat, " + c.keyFile + "]}\n", nil
		}, ""},
		{"missing master key", func(t *testing.T, c custodySetup) (string, map[string]string) {
			return "", nil
		}, "master key source"},
		{"key file inside data_dir", func(t *testing.T, c custodySetup) (string, map[string]string) {
			os.MkdirAll(c.data, 0o700)
			p := filepath.Join(c.data, "master.key")
			if err := keyring.WriteKeyFile(p, c.mk); err != nil {
				t.Fatal(err)
			}
			return "keys: {master_key_file: " + p + "}\n", nil
		}, "master key location"},
		{"world-readable key file", func(t *testing.T, c custodySetup) (string, map[string]string) {
			os.Chmod(c.keyFile, 0o644)
			return "keys: {master_key_file: " + c.keyFile + "}\n", nil
		}, "master key file mode"},
		{"world-readable token file", func(t *testing.T, c custodySetup) (string, map[string]string) {
			p := filepath.Join(c.root, "etc", "token")
			os.WriteFile(p, []byte("chosen-token-0123456789\n"), 0o644)
			return "keys: {master_key_file: " + c.keyFile + ", admin_token_file: " + p + "}\n", nil
		}, "admin token file"},
		{"two sources", func(t *testing.T, c custodySetup) (string, map[string]string) {
			return "keys: {master_key_file: " + c.keyFile + "}\n", map[string]string{"VIGIE_MASTER_KEY": c.mk.Encode()}
		}, "master key source"},
		{"keyring sealed under another key", func(t *testing.T, c custodySetup) (string, map[string]string) {
			other, _ := keyring.NewMasterKey()
			if _, _, err := keyring.Open(c.data, other, keyring.Options{}); err != nil {
				t.Fatal(err)
			}
			return "keys: {master_key_file: " + c.keyFile + "}\n", nil
		}, "keyring"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCustody(t, "")
			keys, env := tc.setup(t, c)
			for k, v := range env {
				t.Setenv(k, v)
			}
			writeConfig(t, c.root, "data_dir: "+c.data+"\n"+keys)
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"check", "--config", c.config}, &out, &errOut)
			table := out.String()
			if !strings.HasPrefix(table, "CHECK") {
				t.Fatalf("no table:\n%s", table)
			}
			if tc.failing == "" {
				if err != nil {
					t.Fatalf("check failed: %v\n%s", err, table)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.failing) {
				t.Fatalf("check = %v, want %q failing\n%s", err, tc.failing, table)
			}
			if !rowFails(table, tc.failing) {
				t.Fatalf("row %q does not fail:\n%s", tc.failing, table)
			}
			if strings.Contains(table+err.Error(), c.mk.Encode()) {
				t.Fatal("check printed the master key")
			}

			// The same setup with production: true refuses to start.
			writeConfig(t, c.root, "production: true\ndata_dir: "+c.data+"\n"+keys)
			before, _ := os.ReadDir(c.data)
			err = run(context.Background(), []string{"--config", c.config, "--listen", "127.0.0.1:0"}, &out, &errOut)
			if err == nil {
				t.Fatal("production start accepted")
			}
			if tc.failing != "keyring" && !errors.Is(err, preflight.ErrFailed) || !strings.Contains(err.Error(), tc.failing) {
				t.Fatalf("production start: %v", err)
			}
			after, _ := os.ReadDir(c.data)
			if len(after) != len(before) {
				t.Fatalf("a refused start changed the data dir: %v → %v", before, after)
			}
			if _, err := os.Stat(filepath.Join(c.root, "vigie-secrets")); err == nil {
				t.Fatal("production made a trial key")
			}
		})
	}
}

func rowFails(table, name string) bool {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, name+"  ") && strings.Contains(l, "FAIL") {
			return true
		}
	}
	return false
}

// TestCheckIsStrictOutsideProduction: `vigie check` applies the production
// rules even when production is false: the trial key does not pass.
func TestCheckIsStrictOutsideProduction(t *testing.T) {
	t.Chdir(t.TempDir())
	var out bytes.Buffer
	err := run(context.Background(), []string{"check"}, &out, &out)
	if err == nil || !rowFails(out.String(), "master key source") {
		t.Fatalf("check on the trial setup: %v\n%s", err, out.String())
	}
	if _, err := os.Stat("vigie-secrets"); err == nil {
		t.Fatal("check made a trial key")
	}
}

func TestAdminTokenReset(t *testing.T) {
	c := newCustody(t, "keys: {master_key_file: etc/master.key}\n")
	const old = "old-admin-token-0123456789"
	if _, _, err := keyring.Open(c.data, c.mk, keyring.Options{AdminToken: old}); err != nil {
		t.Fatal(err)
	}
	current := func() *keyring.Keyring {
		kr, _, err := keyring.Open(c.data, c.mk, keyring.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	args := []string{"admin", "token", "reset", "--config", c.config}

	// Not a terminal, no --print: refused, nothing changed.
	onTerminal(t, false)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--print") {
		t.Fatalf("reset to a non-terminal: %v", err)
	}
	if out.Len() != 0 || !current().CheckAdminToken(old) {
		t.Fatalf("refused reset changed something (stdout %q)", out.String())
	}

	// --print: the token alone on stdout.
	if err := run(context.Background(), append(args, "--print"), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	printed := strings.TrimSpace(out.String())
	if !tokenPattern.MatchString(printed) || printed != tokenPattern.FindString(printed) {
		t.Fatalf("--print printed %q", printed)
	}
	if kr := current(); kr.CheckAdminToken(old) || !kr.CheckAdminToken(printed) {
		t.Fatal("reset: old token works or the printed one does not")
	}
	if strings.Contains(errOut.String(), printed) {
		t.Fatal("token on stderr")
	}

	// A terminal: shown once with an explanation.
	onTerminal(t, true)
	out.Reset()
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	tok := tokenPattern.FindString(out.String())
	if tok == "" || tok == printed || !current().CheckAdminToken(tok) || current().CheckAdminToken(printed) {
		t.Fatalf("terminal reset:\n%s", out.String())
	}
}

// TestMasterKeyRotation is the documented procedure: make a new key,
// rewrap, swap the secret; the old key no longer opens the keyring and the
// pseudonymization keys are unchanged.
func TestMasterKeyRotation(t *testing.T) {
	c := newCustody(t, "keys: {master_key_file: etc/master.key}\n")
	kr, _, err := keyring.Open(c.data, c.mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	newKey := filepath.Join(c.root, "etc", "master.key.new")
	if err := run(context.Background(), []string{"keys", "master", "new", "--out", newKey}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(newKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v", err)
	}
	if strings.Contains(out.String(), keyring.MasterKeyPrefix) {
		t.Fatalf("--out also printed the key: %s", out.String())
	}
	if err := run(context.Background(), []string{"keys", "master", "new", "--out", newKey}, &out, &errOut); err == nil {
		t.Fatal("master new replaced an existing file")
	}
	if err := run(context.Background(), []string{"keys", "rewrap", "--config", c.config, "--new-key-file", c.keyFile}, &out, &errOut); err == nil {
		t.Fatal("rewrap to the same key accepted")
	}
	out.Reset()
	if err := run(context.Background(), []string{"keys", "rewrap", "--config", c.config, "--new-key-file", newKey}, &out, &errOut); err != nil {
		t.Fatalf("rewrap: %v %s", err, errOut.String())
	}
	next, _, err := keyring.Source{File: newKey}.Load(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), next.ID()) {
		t.Fatalf("rewrap output: %s", out.String())
	}
	// Before the swap the configured (old) key no longer opens it.
	if err := run(context.Background(), []string{"keys", "list", "--config", c.config}, &out, &errOut); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("old key after rewrap: %v", err)
	}
	// Swap the secret.
	if err := os.Rename(newKey, c.keyFile); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"keys", "list", "--config", c.config}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), kr.Keys[0].ID+"\t") {
		t.Fatalf("keys after rewrap: %s", out.String())
	}
	re, _, err := keyring.Open(c.data, next, keyring.Options{})
	if err != nil || !bytes.Equal(re.Keys[0].Secret, kr.Keys[0].Secret) || !bytes.Equal(re.VaultKey, kr.VaultKey) {
		t.Fatalf("keys changed by rewrap: %v", err)
	}

	// stdin works too.
	stdin = strings.NewReader(c.mk.Encode())
	defer func() { stdin = os.Stdin }()
	if err := run(context.Background(), []string{"keys", "rewrap", "--config", c.config, "--new-key-file", "-"}, &out, &errOut); err != nil {
		t.Fatalf("rewrap from stdin: %v", err)
	}
	if _, _, err := keyring.Open(c.data, c.mk, keyring.Options{}); err != nil {
		t.Fatalf("after rewrap back: %v", err)
	}
}

// TestRewrapRefusedInClusterMode: in cluster mode the keyring is shared
// (KV VIGIE_KEYRING) under the master key every node reads; rewrap is
// refused before anything changes.
func TestRewrapRefusedInClusterMode(t *testing.T) {
	c := newCustody(t, "keys: {master_key_file: etc/master.key}\nnats: {url: \"nats://127.0.0.1:1\"}\ncluster: {node_id: n1}\n")
	if _, _, err := keyring.Open(c.data, c.mk, keyring.Options{}); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	newKey := filepath.Join(c.root, "etc", "master.key.new")
	if err := run(context.Background(), []string{"keys", "master", "new", "--out", newKey}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"keys", "rewrap", "--config", c.config, "--new-key-file", newKey}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "cluster mode") {
		t.Fatalf("rewrap in cluster mode: %v", err)
	}
	if _, err := keyring.Verify(c.data, c.mk); err != nil {
		t.Fatalf("the refused rewrap changed the keyring: %v", err)
	}
}
