package response

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestReadmeExample validates the configuration shown in README.md, so
// the documentation cannot drift from the code.
func TestReadmeExample(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("no YAML block in README.md")
	}
	for i, b := range blocks {
		src, _, _ := strings.Cut(b, "```")
		var v struct {
			Plugins []struct {
				Name   string         `yaml:"name"`
				Config map[string]any `yaml:"config"`
			} `yaml:"plugins"`
		}
		if err := yaml.Unmarshal([]byte(src), &v); err != nil || len(v.Plugins) != 1 || v.Plugins[0].Name != "response" {
			t.Fatalf("block %d: %v %+v", i, err, v)
		}
		raw, err := json.Marshal(v.Plugins[0].Config)
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseConfig(raw)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if len(st.model.MessageTypes) != 2 || len(st.model.ContactTypes) != 2 || !st.conversions["Order Completed"] {
			t.Errorf("block %d parsed as %+v", i, st.model)
		}
	}
}
