package sensitive

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// corpusItem is one neutral text and how a hit would carry it.
type corpusItem struct {
	source, kind, text string
}

func (c corpusItem) input() Input {
	switch c.kind {
	case "path":
		return Input{Path: c.text}
	case "title":
		return Input{Title: c.text}
	case "key":
		return Input{Properties: props(c.text, "x")}
	}
	return Input{Properties: props("text", c.text)}
}

// neutralCorpus is the e-commerce corpus of testdata/neutral and the demo
// site's pages (examples/site/static): titles, link paths, visible text
// and the snippet calls' event and property names.
func neutralCorpus(t *testing.T) []corpusItem {
	t.Helper()
	var items []corpusItem
	for _, lang := range Languages {
		data, err := os.ReadFile(filepath.Join("testdata", "neutral", lang+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			kind, text, ok := strings.Cut(line, ": ")
			if ok {
				items = append(items, corpusItem{lang, kind, text})
			}
		}
	}
	pages, err := filepath.Glob(filepath.Join("..", "..", "examples", "site", "static", "*.*"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("demo site: %v", err)
	}
	var (
		titleRe = regexp.MustCompile(`(?s)<title>(.*?)</title>`)
		hrefRe  = regexp.MustCompile(`href="([^"]+)"`)
		tagRe   = regexp.MustCompile(`(?s)<script.*?</script>|<style.*?</style>|<[^>]+>`)
		keyRe   = regexp.MustCompile(`([A-Za-z_]+):`)
		callRe  = regexp.MustCompile(`vigie\('track', '([^']+)'`)
	)
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		src := "demo/" + filepath.Base(p)
		s := string(data)
		if strings.HasSuffix(p, ".html") {
			items = append(items, corpusItem{src, "path", "/demo/" + strings.TrimSuffix(filepath.Base(p), ".html")})
			for _, m := range titleRe.FindAllStringSubmatch(s, -1) {
				items = append(items, corpusItem{src, "title", m[1]})
			}
			for _, m := range hrefRe.FindAllStringSubmatch(s, -1) {
				items = append(items, corpusItem{src, "path", "/demo/" + m[1]})
			}
			for _, para := range strings.Split(tagRe.ReplaceAllString(s, "\n"), "\n\n") {
				if para = strings.Join(strings.Fields(para), " "); para != "" {
					items = append(items, corpusItem{src, "text", para})
				}
			}
		}
		if strings.HasSuffix(p, ".js") {
			for _, m := range callRe.FindAllStringSubmatch(s, -1) {
				items = append(items, corpusItem{src, "title", m[1]})
			}
			for _, m := range keyRe.FindAllStringSubmatch(s, -1) {
				items = append(items, corpusItem{src, "key", m[1]})
			}
		}
	}
	return items
}

// maxFalsePositiveRate is the ceiling TestNeutralCorpus enforces.
const maxFalsePositiveRate = 0.01

// TestNeutralCorpus counts false positives: texts about no special
// category that the default policy flags anyway. The rate is logged (go
// test -v) and must stay below maxFalsePositiveRate.
func TestNeutralCorpus(t *testing.T) {
	d := detector(t, DefaultPolicy())
	items := neutralCorpus(t)
	if len(items) < 300 {
		t.Fatalf("corpus of %d items only", len(items))
	}
	fp := 0
	for _, it := range items {
		if f := scan(t, d, it.input()); f.Any() {
			fp++
			t.Logf("false positive (%s, %s): %q → %s", it.source, it.kind, it.text, f.String())
		}
	}
	rate := float64(fp) / float64(len(items))
	t.Logf("neutral corpus: %d false positives in %d items (%.2f%%)", fp, len(items), 100*rate)
	if rate > maxFalsePositiveRate {
		t.Errorf("false-positive rate %.2f%% above %.2f%%", 100*rate, 100*maxFalsePositiveRate)
	}
}
