package js

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// maxGzip is the size budget of the snippet, gzipped.
const maxGzip = 3072

func gzipLen(t *testing.T, b []byte) int {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}

func TestScriptSize(t *testing.T) {
	if len(Script) == 0 {
		t.Fatal("dist/s.js is empty")
	}
	n := gzipLen(t, Script)
	t.Logf("s.js: %d bytes minified, %d bytes gzipped", len(Script), n)
	if n >= maxGzip {
		t.Errorf("s.js is %d bytes gzipped, budget %d", n, maxGzip)
	}
}

// TestScriptContent guards the privacy promises and the contract at the level
// of the built file: no cookie, storage or anonymous identifier in the code,
// and the route and library name the server expects.
func TestScriptContent(t *testing.T) {
	s := string(Script)
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"cookie", false},
		{"localStorage", false},
		{"sessionStorage", false},
		{"indexedDB", false},
		{"anonymousId", false},
		{"console.", false},
		{`"/v1/b"`, true},
		{`"vigie.js"`, true},
		{`"` + Version + `"`, true},
		{"sendBeacon", true},
		{`credentials:"include"`, true},
		{`"Content-Type":"text/plain"`, true},
	} {
		if got := strings.Contains(s, tc.text); got != tc.want {
			t.Errorf("s.js contains %q: %v, want %v", tc.text, got, tc.want)
		}
	}
	for i, c := range Script {
		if c >= 0x80 {
			t.Fatalf("s.js has a non-ASCII byte at %d", i)
		}
	}
}

func TestVersionMatchesPackageJSON(t *testing.T) {
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Version         string            `json:"version"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Version != Version {
		t.Errorf("package.json version %q, Version %q", pkg.Version, Version)
	}
	if v := pkg.DevDependencies["esbuild"]; v == "" || strings.ContainsAny(v, "^~<>*x ") {
		t.Errorf("esbuild must be pinned to an exact version, got %q", v)
	}
}

// tools returns the node binary and the node_modules directory holding
// esbuild ($VIGIE_JS_NODE_MODULES, else ./node_modules). What is missing
// skips the test locally and fails it in CI.
func tools(t *testing.T, needEsbuild bool) (node, modules string) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI (.ci/run must run: npm ci --prefix sdk/js)", what)
		}
		t.Skipf("%s missing; run: cd sdk/js && npm ci", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	modules = os.Getenv("VIGIE_JS_NODE_MODULES")
	if modules == "" {
		modules = "node_modules"
	}
	if modules, err = filepath.Abs(modules); err != nil {
		t.Fatal(err)
	}
	if needEsbuild {
		if _, err := os.Stat(filepath.Join(modules, "esbuild", "package.json")); err != nil {
			missing("esbuild in " + modules)
		}
	}
	return node, modules
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// TestBuildIsCurrent rebuilds the snippet from src/ and compares it with the
// committed dist/s.js.
func TestBuildIsCurrent(t *testing.T) {
	node, modules := tools(t, true)
	t.Setenv("VIGIE_JS_NODE_MODULES", modules)
	out := filepath.Join(t.TempDir(), "s.js")
	t.Log(strings.TrimSpace(string(run(t, node, "build.mjs", "--out", out))))
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Script) {
		t.Fatalf("dist/s.js (%d bytes) does not match a build of src/ (%d bytes): run cd sdk/js && npm run build", len(Script), len(got))
	}
}

// TestNode runs the JavaScript tests (test/*.test.js) with node --test: the
// pure logic (campaign, consent mapping, queue and retry) and the built
// dist/s.js in a fake page.
func TestNode(t *testing.T) {
	node, _ := tools(t, false)
	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JavaScript tests found: %v", err)
	}
	out := run(t, node, append([]string{"--test"}, files...)...)
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
