package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/preflight"
)

// keyCustody is where cfg keeps its secrets. strict applies the production
// rules (and so uses no trial key).
func keyCustody(cfg config.Config, strict bool) keyring.Custody {
	src := keyring.Source{
		Value:          cfg.Keys.MasterKey.Reveal(),
		File:           cfg.Keys.MasterKeyFile,
		Command:        cfg.Keys.MasterKeyCommand,
		CommandTimeout: time.Duration(cfg.Keys.CommandTimeout),
		TrialDir:       cfg.Keys.SecretsDir,
	}
	if strict {
		src.TrialDir = ""
	}
	return keyring.Custody{Source: src, AdminTokenFile: cfg.Keys.AdminTokenFile, DataDir: cfg.DataDir, Strict: strict}
}

// chosenAdminToken is the admin token the operator chose for the first
// start (VIGIE_ADMIN_TOKEN or keys.admin_token_file), "" if none.
func chosenAdminToken(cfg config.Config) (string, error) {
	if cfg.Keys.AdminTokenFile == "" {
		return cfg.Keys.AdminToken.Reveal(), nil
	}
	b, err := keyring.ReadSecretFile(cfg.Keys.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("proxy: keys.admin_token_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// OpenKeyring opens the keyring of cfg's data directory with cfg's master
// key, after checking the key custody rules (strictly with production:
// true): a broken rule refuses, or outside production is logged as a
// warning. On a first run without a configured master key (never in
// production) it makes the trial key and logs, once, that production must
// keep the key elsewhere. It seals a plaintext keyring of an earlier
// version, and never makes keys beside a keyring that does not open. Start
// uses it, and so do the commands that need the keys.
func OpenKeyring(ctx context.Context, cfg config.Config, log *slog.Logger) (*keyring.Keyring, keyring.Opened, error) {
	c := keyCustody(cfg, cfg.Production)
	rep := c.Audit()
	if err := rep.Err(); err != nil {
		return nil, keyring.Opened{}, fmt.Errorf("proxy: key custody: %w", err)
	}
	for _, w := range rep.Warnings() {
		log.Warn("key custody: "+w.Name+" (production: true refuses this)", "problem", w.Detail)
	}
	st, err := keyring.Stat(cfg.DataDir)
	if err != nil {
		return nil, keyring.Opened{}, err
	}
	// Data without a keyring: its keys are lost (or elsewhere), and new
	// ones would not read it.
	hasData := !st.Exists && dirHasEntries(filepath.Join(cfg.DataDir, "badger"))
	if hasData {
		return nil, keyring.Opened{}, fmt.Errorf("proxy: %s holds data but %w (%s is missing); Vigie never makes new keys beside existing data: restore the keyring from the backup made with this data",
			cfg.DataDir, keyring.ErrNoKeyring, keyring.FileName)
	}
	mk, ld, err := c.Source.Load(ctx, !st.Sealed)
	if err != nil {
		if st.Sealed && errors.Is(err, keyring.ErrNoMasterKey) {
			return nil, keyring.Opened{}, fmt.Errorf("proxy: %s holds a keyring sealed under %s and no master key is at hand (%w). Vigie never makes new keys beside existing data: give it the master key that sealed the keyring",
				cfg.DataDir, st.MasterKeyID, err)
		}
		return nil, keyring.Opened{}, fmt.Errorf("proxy: master key: %w", err)
	}
	if ld.Created {
		log.Warn("made a trial master key for this first run; production must keep the master key elsewhere "+
			"(keys.master_key_file, keys.master_key_command or VIGIE_MASTER_KEY) and set production: true",
			"file", ld.Path, "master_key", mk.ID())
	}
	tok, err := chosenAdminToken(cfg)
	if err != nil {
		return nil, keyring.Opened{}, err
	}
	kr, op, err := keyring.Open(cfg.DataDir, mk, keyring.Options{AdminToken: tok, MustExist: st.Exists})
	if err != nil {
		return nil, keyring.Opened{}, fmt.Errorf("proxy: keyring in %s: %w", cfg.DataDir, err)
	}
	switch {
	case op.Migrated && op.Wiped:
		log.Warn("sealed the plaintext keyring of an earlier version under the master key; the plaintext file was overwritten and removed (backups made before still hold it)", "master_key", mk.ID())
	case op.Migrated:
		log.Warn("sealed the plaintext keyring of an earlier version under the master key; the plaintext file was removed but could not be overwritten first", "master_key", mk.ID())
	case op.BlindIndexAdded:
		log.Info("added a blind-index key to the keyring")
	}
	if !op.Created && tok != "" && !kr.CheckAdminToken(tok) {
		log.Warn("the chosen admin token (VIGIE_ADMIN_TOKEN or keys.admin_token_file) is not the keyring's: it is adopted only when the keyring is made; `vigie admin token reset` makes a new one")
	}
	log.Info("keyring open", "master_key", mk.ID(), "source", string(ld.Origin))
	return kr, op, nil
}

// Check runs the checks of `vigie check` on cfg, under the production rules
// whatever cfg.Production says: the configuration, the key custody rules,
// the master key (read; a command is run) and the keyring (opened with it,
// read-only). A failed check would stop Vigie from starting in production.
func Check(ctx context.Context, cfg config.Config) preflight.Report {
	rep := preflight.Report{{Name: "configuration", Status: preflight.Pass,
		Detail: fmt.Sprintf("%d site(s), data_dir %s, production: %v", len(cfg.Sites), cfg.DataDir, cfg.Production)}}
	if err := cfg.Validate(); err != nil {
		rep[0] = preflight.Result{Name: "configuration", Status: preflight.Fail, Detail: err.Error()}
	}
	rep = append(rep, cnilReport(cfg)...)
	c := keyCustody(cfg, true)
	rep = append(rep, c.Audit()...)

	mk, ld, mkErr := c.Source.Load(ctx, false)
	if mkErr != nil {
		rep = append(rep, preflight.Result{Name: "master key", Status: preflight.Fail, Detail: trimPkg(mkErr)})
	} else {
		rep = append(rep, preflight.Result{Name: "master key", Status: preflight.Pass, Detail: fmt.Sprintf("%s from %s", mk.ID(), ld.Origin)})
	}

	row := preflight.Result{Name: "keyring"}
	st, err := keyring.Stat(cfg.DataDir)
	switch {
	case err != nil:
		row.Status, row.Detail = preflight.Fail, trimPkg(err)
	case !st.Exists && dirHasEntries(filepath.Join(cfg.DataDir, "badger")):
		row.Status, row.Detail = preflight.Fail, fmt.Sprintf("%s holds data but no %s: restore it from the backup made with this data", cfg.DataDir, keyring.FileName)
	case !st.Exists:
		row.Status, row.Detail = preflight.Pass, "none yet: made at first start"
	case mkErr != nil && st.Sealed:
		row.Status, row.Detail = preflight.Fail, fmt.Sprintf("sealed under %s; no master key at hand opens it", st.MasterKeyID)
	case mkErr != nil:
		row.Status, row.Detail = preflight.Fail, "plaintext keyring of an earlier version; no master key at hand to seal it"
	default:
		if _, err := keyring.Verify(cfg.DataDir, mk); err != nil {
			row.Status, row.Detail = preflight.Fail, trimPkg(err)
		} else if !st.Sealed {
			row.Status, row.Detail = preflight.Warn, fmt.Sprintf("plaintext keyring of an earlier version: sealed under %s at the next start", mk.ID())
		} else {
			row.Status, row.Detail = preflight.Pass, "opens with "+st.MasterKeyID
		}
	}
	return append(rep, row, OrganizationCheck(cfg))
}

// dirHasEntries reports whether dir exists and is not empty.
func dirHasEntries(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

func trimPkg(err error) string { return strings.TrimPrefix(err.Error(), "keyring: ") }
