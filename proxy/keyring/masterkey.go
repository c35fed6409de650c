package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// MasterKeyPrefix starts the text form of every master key.
const MasterKeyPrefix = "vigie-mk-"

// TrialKeyName is the file name of the trial master key inside
// Source.TrialDir.
const TrialKeyName = "master.key"

// DefaultCommandTimeout bounds Source.Command when Source.CommandTimeout is
// zero.
const DefaultCommandTimeout = 30 * time.Second

// maxSecretFile is the most bytes read from a key or token file or a key
// command's output.
const maxSecretFile = 4096

// MasterKey is the key that seals the keyring: 32 random bytes, written
// "vigie-mk-" + base64url (no padding). Its zero value is no key. It never
// prints itself: String, %v and slog show only its id.
type MasterKey struct{ k *[secretLen]byte }

// NewMasterKey returns a new random master key.
func NewMasterKey() (MasterKey, error) {
	var k [secretLen]byte
	if _, err := rand.Read(k[:]); err != nil {
		return MasterKey{}, fmt.Errorf("keyring: random: %w", err)
	}
	return MasterKey{k: &k}, nil
}

// ParseMasterKey reads a master key's text form; surrounding white space is
// ignored. The error never quotes the text.
func ParseMasterKey(s string) (MasterKey, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, MasterKeyPrefix)
	if !ok {
		return MasterKey{}, fmt.Errorf("%w: it must start with %q (make one with `vigie keys master new`)", ErrBadMasterKey, MasterKeyPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != secretLen {
		return MasterKey{}, fmt.Errorf("%w: %q must be followed by 32 bytes in base64url without padding", ErrBadMasterKey, MasterKeyPrefix)
	}
	var k [secretLen]byte
	copy(k[:], b)
	clear(b)
	return MasterKey{k: &k}, nil
}

// IsZero reports whether m is no key.
func (m MasterKey) IsZero() bool { return m.k == nil }

// Encode is the key's text form, the secret itself: write it only where
// the operator asked for it.
func (m MasterKey) Encode() string {
	if m.k == nil {
		return ""
	}
	return MasterKeyPrefix + base64.RawURLEncoding.EncodeToString(m.k[:])
}

// ID names the key without revealing it: "mk-" and 12 hex digits of an
// HMAC of a fixed label under the key. A keyring records the id of the key
// that sealed it, so that a wrong key is told apart from a damaged file.
func (m MasterKey) ID() string {
	if m.k == nil {
		return ""
	}
	h := hmac.New(sha256.New, m.k[:])
	h.Write([]byte("vigie master key id"))
	return "mk-" + hex.EncodeToString(h.Sum(nil)[:6])
}

// String is "master key mk-…" (never the key).
func (m MasterKey) String() string {
	if m.k == nil {
		return "no master key"
	}
	return "master key " + m.ID()
}

// GoString is String: %#v does not reveal the key either.
func (m MasterKey) GoString() string { return m.String() }

// LogValue is the key's id.
func (m MasterKey) LogValue() slog.Value { return slog.StringValue(m.ID()) }

// Equal reports whether m and o are the same key (constant time).
func (m MasterKey) Equal(o MasterKey) bool {
	if m.k == nil || o.k == nil {
		return m.k == o.k
	}
	return hmac.Equal(m.k[:], o.k[:])
}

// Origin says where a master key comes from.
type Origin string

// Master key origins.
const (
	// FromEnv: the VIGIE_MASTER_KEY environment variable.
	FromEnv Origin = "VIGIE_MASTER_KEY"
	// FromFile: keys.master_key_file.
	FromFile Origin = "keys.master_key_file"
	// FromCommand: keys.master_key_command.
	FromCommand Origin = "keys.master_key_command"
	// FromTrial: the trial key Vigie creates on a first run with no key
	// configured (never in production).
	FromTrial Origin = "trial key"
)

// Source is where the master key comes from: exactly one of Value, File
// and Command; with none of them, the trial key in TrialDir.
type Source struct {
	// Value is the key's text itself (from VIGIE_MASTER_KEY).
	Value string
	// File holds the key's text (keys.master_key_file); it must be outside
	// the data directory and readable by its owner only.
	File string
	// Command prints the key's text on its stdout
	// (keys.master_key_command): argv, run without a shell, with Vigie's
	// environment, no stdin, and at most CommandTimeout.
	Command []string
	// CommandTimeout bounds Command. Default DefaultCommandTimeout.
	CommandTimeout time.Duration
	// TrialDir is where a trial key is kept when no source is configured;
	// "" means no trial key (production).
	TrialDir string
}

// Origin says which source is configured: ErrAmbiguousSource when several
// are, ErrNoMasterKey when none is and there is no TrialDir.
func (s Source) Origin() (Origin, error) {
	var set []Origin
	if s.Value != "" {
		set = append(set, FromEnv)
	}
	if s.File != "" {
		set = append(set, FromFile)
	}
	if len(s.Command) > 0 {
		set = append(set, FromCommand)
	}
	switch {
	case len(set) == 1:
		return set[0], nil
	case len(set) > 1:
		names := make([]string, len(set))
		for i, o := range set {
			names[i] = string(o)
		}
		return "", fmt.Errorf("%w: %s are all set; keep one", ErrAmbiguousSource, strings.Join(names, " and "))
	case s.TrialDir != "":
		return FromTrial, nil
	}
	return "", fmt.Errorf("%w: set VIGIE_MASTER_KEY, keys.master_key_file or keys.master_key_command", ErrNoMasterKey)
}

// TrialPath is the trial key's file ("" without TrialDir).
func (s Source) TrialPath() string {
	if s.TrialDir == "" {
		return ""
	}
	return filepath.Join(s.TrialDir, TrialKeyName)
}

// Loaded tells where Load found the master key.
type Loaded struct {
	// Origin is the source used.
	Origin Origin
	// Path is the file read (FromFile, FromTrial).
	Path string
	// Created: the trial key did not exist and was made now.
	Created bool
}

// Load reads the master key from the configured source. A missing trial
// key is created (0600, in a 0700 directory) only when create is true:
// callers allow it only for a data directory without a sealed keyring, so
// that a lost key never silently becomes a new one.
func (s Source) Load(ctx context.Context, create bool) (MasterKey, Loaded, error) {
	o, err := s.Origin()
	if err != nil {
		return MasterKey{}, Loaded{}, err
	}
	ld := Loaded{Origin: o}
	var mk MasterKey
	switch o {
	case FromEnv:
		mk, err = ParseMasterKey(s.Value)
	case FromFile:
		ld.Path = s.File
		mk, err = readKeyFile(s.File)
	case FromCommand:
		mk, err = s.runCommand(ctx)
	case FromTrial:
		ld.Path = s.TrialPath()
		mk, err = readKeyFile(ld.Path)
		if errors.Is(err, fs.ErrNotExist) {
			if !create {
				return MasterKey{}, ld, fmt.Errorf("%w: no key configured and no trial key at %s", ErrNoMasterKey, ld.Path)
			}
			mk, err = createTrialKey(s.TrialDir, ld.Path)
			ld.Created = err == nil
		}
	}
	if err != nil {
		return MasterKey{}, ld, fmt.Errorf("%s: %w", o, err)
	}
	return mk, ld, nil
}

func readKeyFile(path string) (MasterKey, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return MasterKey{}, err
	}
	defer clear(b)
	return ParseMasterKey(string(b))
}

// ReadSecretFile reads a small secret file (at most 4 KiB are read).
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSecretFile))
}

func createTrialKey(dir, path string) (MasterKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return MasterKey{}, fmt.Errorf("create %s: %w", dir, err)
	}
	mk, err := NewMasterKey()
	if err != nil {
		return MasterKey{}, err
	}
	if err := WriteKeyFile(path, mk); err != nil {
		return MasterKey{}, err
	}
	return mk, nil
}

// WriteKeyFile writes mk to a new file at path, mode 0600; it never
// replaces an existing file.
func WriteKeyFile(path string, mk MasterKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keyring: write master key: %w", err)
	}
	if _, err := f.WriteString(mk.Encode() + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("keyring: write master key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keyring: write master key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keyring: write master key: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// mkText matches a master key's text, to keep it out of error messages.
var mkText = regexp.MustCompile(regexp.QuoteMeta(MasterKeyPrefix) + `[A-Za-z0-9_-]*`)

// runCommand runs Command and parses its stdout. On failure the error
// quotes the last line of its stderr (200 bytes at most, any master key
// text redacted); its stdout is never quoted.
func (s Source) runCommand(ctx context.Context) (MasterKey, error) {
	timeout := s.CommandTimeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...)
	stdout := &capped{max: maxSecretFile}
	stderr := &capped{max: maxSecretFile}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild keeping the pipes open must not hold Vigie's start.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	defer clear(stdout.b)
	name := filepath.Base(s.Command[0])
	if ctx.Err() != nil {
		return MasterKey{}, fmt.Errorf("%w: %s did not finish within %s", ErrCommand, name, timeout)
	}
	if err != nil {
		why := ""
		if line := lastLine(stderr.b); line != "" {
			why = ": " + line
		}
		return MasterKey{}, fmt.Errorf("%w: %s: %v%s", ErrCommand, name, err, why)
	}
	mk, err := ParseMasterKey(string(stdout.b))
	if err != nil {
		return MasterKey{}, fmt.Errorf("%s printed something else than a master key: %w", name, err)
	}
	return mk, nil
}

func lastLine(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	l := string(bytes.TrimSpace(lines[len(lines)-1]))
	l = mkText.ReplaceAllString(l, MasterKeyPrefix+"[redacted]")
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return strings.ToValidUTF8(l, "?")
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
