package console

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAssetsBuildIsCurrent rebuilds dist/ from src/ with esbuild and
// uPlot ($VIGIE_CONSOLE_NODE_MODULES, installed by .ci/run outside the
// source tree) and compares it byte for byte with the committed build.
func TestAssetsBuildIsCurrent(t *testing.T) {
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI (.ci/run installs proxy/console/assets/package.json into $VIGIE_CONSOLE_NODE_MODULES_DIR)", what)
		}
		t.Skipf("%s missing; run: cd proxy/console/assets && npm ci", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	mods := os.Getenv("VIGIE_CONSOLE_NODE_MODULES")
	if mods == "" {
		mods = filepath.Join("assets", "node_modules")
	}
	if mods, err = filepath.Abs(mods); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"esbuild", "uplot"} {
		if _, err := os.Stat(filepath.Join(mods, p, "package.json")); err != nil {
			missing(p + " in " + mods)
		}
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("assets", "build.mjs"), "--out", out)
	cmd.Env = append(os.Environ(), "VIGIE_CONSOLE_NODE_MODULES="+mods)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, f := range []string{"console.js", "console.css"} {
		got, _ := os.ReadFile(filepath.Join(out, f))
		want, _ := os.ReadFile(filepath.Join("assets", "dist", f))
		if len(got) == 0 || !bytes.Equal(got, want) {
			t.Errorf("assets/dist/%s (%d bytes) does not match a build of assets/src (%d bytes): run cd proxy/console/assets && npm run build", f, len(want), len(got))
		}
	}
}

// TestAssetsPinned: the build's tools are pinned, and the bundle carries
// uPlot and no address of anywhere else (everything is embedded).
func TestAssetsPinned(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("assets", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"esbuild", "uplot"} {
		if v := pkg.DevDependencies[d]; v == "" || strings.ContainsAny(v, "^~<>*x ") {
			t.Errorf("%s must be pinned to an exact version, got %q", d, v)
		}
	}
	js, _ := assetFS.ReadFile("assets/dist/console.js")
	css, _ := assetFS.ReadFile("assets/dist/console.css")
	if !bytes.Contains(js, []byte("uplot")) || !bytes.Contains(css, []byte(".uplot")) {
		t.Error("the bundle lacks uPlot")
	}
	for _, f := range [][]byte{js, css} {
		if bytes.Contains(f, []byte("//cdn")) || bytes.Contains(f, []byte("https://")) {
			t.Error("the bundle names another host")
		}
	}
}
