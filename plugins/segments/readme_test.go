package segments

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestReadmeExamples validates every YAML configuration shown in
// README.md, so the documentation cannot drift from the code.
func TestReadmeExamples(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("found %d YAML blocks in README.md", len(blocks))
	}
	for i, b := range blocks {
		src, _, _ := strings.Cut(b, "```")
		var v map[string]any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if p, ok := v["plugins"].(map[string]any); ok {
			v, _ = p["segments"].(map[string]any)
		}
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		infos, err := Names(raw)
		if err != nil {
			t.Errorf("block %d: %v", i, err)
		} else if len(infos) == 0 {
			t.Errorf("block %d has no segments", i)
		}
	}
}
