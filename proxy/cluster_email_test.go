package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClusterScannerClicksSpreadOverNodes: a security scanner follows
// every link of an e-mail at once, and the load balancer sends its clicks
// to different nodes. The second link's click, on node 2, is judged with
// node 1's click of the first link a moment before: a burst, class
// scanner, kept out of the human clicks. On the code before, each node saw
// one click and counted a human.
func TestClusterScannerClicksSpreadOverNodes(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	a, b := nodes[0], nodes[1]
	html := `<html><body><a href="https://shop.example/one">One</a> <a href="https://shop.example/two">Two</a></body></html>`
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "spread", "html": html, "recipients": []string{"user-7"},
		"honeypot": false, "sent_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)})
	code, out := a.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + a.AdminToken()}})
	var rw struct{ Messages []struct{ HTML string } }
	if err := json.Unmarshal(out, &rw); code != 200 || err != nil || len(rw.Messages) != 1 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	links := clickRe.FindAllStringSubmatch(rw.Messages[0].HTML, -1)
	if len(links) != 2 {
		t.Fatalf("links in %s", rw.Messages[0].HTML)
	}
	onNode := func(link string, in string) string {
		i := strings.Index(link, "/e/c/")
		return in + link[i:]
	}
	if code, _ := emailGet(t, onNode(links[0][1], a.URL)); code != http.StatusFound {
		t.Fatalf("first click on node 1: %d", code)
	}
	if code, _ := emailGet(t, onNode(links[1][1], b.URL)); code != http.StatusFound {
		t.Fatalf("second click on node 2: %d", code)
	}
	var classes []string
	for _, c := range emailCounts(t, b, "spread") {
		if c.Kind == "click" {
			classes = append(classes, c.Class)
		}
	}
	if len(classes) != 1 || classes[0] != "scanner" {
		t.Fatalf("node 2 counted the second link's click as %v, want scanner (a burst across nodes)", classes)
	}
}
