package keyring

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigie-dev/vigie/proxy/preflight"
)

// Custody is where Vigie's secrets are kept, as configured: the rules of
// key custody are checked against it by Audit.
type Custody struct {
	// Source is where the master key comes from.
	Source Source
	// AdminTokenFile holds the admin token chosen for the first start
	// ("" if none).
	AdminTokenFile string
	// DataDir is the data directory (the keyring, Badger, JetStream).
	DataDir string
	// Strict applies the production rules: no trial key, and a key file
	// inside the data directory or readable by group or others fails
	// rather than warns. `vigie check` is always strict.
	Strict bool
}

// Audit checks the custody rules without reading any secret:
//
//   - master key source: exactly one source is configured (outside strict
//     mode, none means the trial key);
//   - master key location: a key file is outside the data directory
//     (symbolic links and relative paths resolved); the trial directory
//     and the data directory are not inside one another;
//   - master key file mode: a key file is a regular file, not readable
//     or writable by group or others;
//   - admin token file: the same two rules for keys.admin_token_file.
//
// Broken rules fail in strict mode and warn otherwise, except an ambiguous
// source and a trial directory nested with the data directory, which always
// fail.
func (c Custody) Audit() preflight.Report {
	var r preflight.Report
	add := func(name string, st preflight.Status, format string, a ...any) {
		r = append(r, preflight.Result{Name: name, Status: st, Detail: fmt.Sprintf(format, a...)})
	}
	soft := preflight.Warn
	if c.Strict {
		soft = preflight.Fail
	}
	src := c.Source
	if c.Strict {
		src.TrialDir = ""
	}
	const (
		nSource   = "master key source"
		nLocation = "master key location"
		nMode     = "master key file mode"
		nToken    = "admin token file"
	)
	o, err := src.Origin()
	switch {
	case errors.Is(err, ErrNoMasterKey):
		add(nSource, preflight.Fail, "none configured: set VIGIE_MASTER_KEY, keys.master_key_file or keys.master_key_command (production never uses a trial key)")
	case err != nil:
		add(nSource, preflight.Fail, "%s", strings.TrimPrefix(err.Error(), "keyring: "))
	case o == FromTrial:
		add(nSource, preflight.Pass, "trial key %s (made at first start; not for production)", src.TrialPath())
	case o == FromFile:
		add(nSource, preflight.Pass, "%s %s", o, src.File)
	case o == FromCommand:
		add(nSource, preflight.Pass, "%s %s", o, filepath.Base(src.Command[0]))
	default:
		add(nSource, preflight.Pass, "%s", o)
	}

	switch o {
	case FromFile:
		if in, err := inside(src.File, c.DataDir); err != nil {
			add(nLocation, preflight.Fail, "cannot resolve %s: %v", src.File, err)
		} else if in {
			add(nLocation, soft, "%s is inside data_dir %s: a copy of the data dir would carry its key", src.File, c.DataDir)
		} else {
			add(nLocation, preflight.Pass, "outside data_dir")
		}
		c.fileMode(&r, nMode, src.File, soft, false)
	case FromTrial:
		a, errA := inside(src.TrialDir, c.DataDir)
		b, errB := inside(c.DataDir, src.TrialDir)
		switch {
		case errA != nil || errB != nil:
			add(nLocation, preflight.Fail, "cannot resolve %s or %s", src.TrialDir, c.DataDir)
		case a || b:
			add(nLocation, preflight.Fail, "keys.secrets_dir %s and data_dir %s must not be inside one another: a copy of one would carry the other", src.TrialDir, c.DataDir)
		default:
			add(nLocation, preflight.Pass, "outside data_dir")
		}
		c.fileMode(&r, nMode, src.TrialPath(), soft, true)
	case FromEnv, FromCommand:
		add(nLocation, preflight.Pass, "not on disk (from %s)", o)
	}

	if c.AdminTokenFile != "" {
		if in, err := inside(c.AdminTokenFile, c.DataDir); err != nil {
			add(nToken, preflight.Fail, "cannot resolve %s: %v", c.AdminTokenFile, err)
		} else if in {
			add(nToken, soft, "%s is inside data_dir %s: the token would sit in clear beside the data", c.AdminTokenFile, c.DataDir)
		} else {
			c.fileMode(&r, nToken, c.AdminTokenFile, soft, false)
		}
	}
	return r
}

// fileMode checks that path is a regular file only its owner can read or
// write. missingOK: a file not made yet passes.
func (c Custody) fileMode(r *preflight.Report, name, path string, soft preflight.Status, missingOK bool) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && missingOK:
		*r = append(*r, preflight.Result{Name: name, Status: preflight.Pass, Detail: "not made yet (made 0600 at first start)"})
	case err != nil:
		*r = append(*r, preflight.Result{Name: name, Status: preflight.Fail, Detail: fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err))})
	case !st.Mode().IsRegular():
		*r = append(*r, preflight.Result{Name: name, Status: preflight.Fail, Detail: fmt.Sprintf("%s is not a regular file", path)})
	case st.Mode().Perm()&0o077 != 0:
		*r = append(*r, preflight.Result{Name: name, Status: soft, Detail: fmt.Sprintf("%s has mode %04o: group or others can read it (chmod 600 %s)", path, st.Mode().Perm(), path)})
	default:
		*r = append(*r, preflight.Result{Name: name, Status: preflight.Pass, Detail: fmt.Sprintf("%04o", st.Mode().Perm())})
	}
}

// inside reports whether path is dir or under it, once both are made
// absolute and their symbolic links resolved (as far as they exist).
func inside(path, dir string) (bool, error) {
	p, err := resolve(path)
	if err != nil {
		return false, err
	}
	d, err := resolve(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))), nil
}

// resolve makes p absolute and resolves the symbolic links of its longest
// existing prefix.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	cur, rest := abs, ""
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
