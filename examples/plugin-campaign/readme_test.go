package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListings keeps the README's listings identical to the programs
// compiled and tested in internal/minimal.
func TestReadmeListings(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"internal/minimal/main.go", "internal/minimal/main_test.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "```go\n"+string(src)+"```\n") {
			t.Errorf("README.md does not contain %s verbatim in a go block", file)
		}
	}
}
