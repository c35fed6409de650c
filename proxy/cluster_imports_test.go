package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/proxy/imports"
)

// TestClusterImportJobShownOnEveryNode: behind a load balancer, the
// marketer who uploaded a file to node 1 polls its job on node 2. Node 2
// shows it (status, counts, the node running it) and lists it; the
// per-row errors and the cancellation, which only node 1 can serve, are
// passed on to node 1 and answered as node 1 answers them (a running job
// canceled from node 2 ends canceled on node 1), and 503 naming node 1
// while it is down. The view in VIGIE_IMPORTS holds no value of the file.
// On the code before, node 2 answered 404, then 409 job_on_other_node.
func TestClusterImportJobShownOnEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	a, b := nodes[0], nodes[1]
	mapping := `{"event": "Order Completed", "identity": {"column": "email", "kind": "email"},
	  "properties": {"total": {"column": "amount", "type": "number"}}, "purposes": ["marketing"],
	  "lawful_basis": {"column": "consent", "date_column": "at"}}`
	at := time.Now().UTC().AddDate(0, 0, -1).Format(time.RFC3339)
	file := "email,amount,consent,at\n" + canarytest.Email + ",42,yes," + at + "\nrow-canary-2@example.org,abc,yes," + at + "\n"
	code, body := postImport(t, a, "?site=demo", mapping, "orders.csv", []byte(file), nil)
	var j imports.Job
	if err := json.Unmarshal(body, &j); code != http.StatusAccepted || err != nil {
		t.Fatalf("import on node 1: %d %s", code, body)
	}
	done := waitImport(t, a, j.ID)
	if done.Status != imports.StatusDone || done.Rows.Read != 2 || done.Node == "" {
		t.Fatalf("job on node 1: %+v", done)
	}
	var seen imports.Job
	waitFor(t, "node 2 to show node 1's finished job", 10*time.Second, func() bool {
		code, body := b.Admin("/admin/v1/imports/" + j.ID)
		return code == 200 && json.Unmarshal(body, &seen) == nil && seen.Status == imports.StatusDone
	})
	if seen.Rows != done.Rows || seen.Node != done.Node || seen.File.SHA256 != done.File.SHA256 {
		t.Fatalf("node 2 shows %+v, node 1 %+v", seen, done)
	}
	code, body = b.Admin("/admin/v1/imports?site=demo")
	if code != 200 || !strings.Contains(string(body), j.ID) {
		t.Fatalf("node 2's list: %d %s", code, body)
	}
	auth := http.Header{"Authorization": {"Bearer " + b.AdminToken()}}
	for _, path := range []string{"/errors", "/errors?limit=1"} {
		codeA, bodyA := a.Admin("/admin/v1/imports/" + j.ID + path)
		codeB, bodyB := b.Admin("/admin/v1/imports/" + j.ID + path)
		if codeA != 200 || !strings.Contains(string(bodyA), `"row":2`) || codeB != codeA || string(bodyB) != string(bodyA) {
			t.Fatalf("GET %s: node 1 %d %s, node 2 %d %s", path, codeA, bodyA, codeB, bodyB)
		}
	}
	if code, body := b.Admin("/admin/v1/imports/" + j.ID + "/errors?limit=0"); code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"limit"`) {
		t.Fatalf("node 1's answer to a bad limit, from node 2: %d %s", code, body)
	}
	if code, body := b.Do("DELETE", "/admin/v1/imports/"+j.ID, nil, auth); code != http.StatusConflict || !strings.Contains(string(body), "already_ended") {
		t.Fatalf("DELETE of node 1's finished job on node 2: %d %s", code, body)
	}

	// A job still running on node 1, canceled from node 2.
	var big strings.Builder
	big.WriteString("email,amount,consent,at\n")
	for i := range 60_000 {
		fmt.Fprintf(&big, "buyer-%d@example.org,%d,yes,%s\n", i, i%500, at)
	}
	code, body = postImport(t, a, "?site=demo", mapping, "big.csv", []byte(big.String()), nil)
	var run imports.Job
	if err := json.Unmarshal(body, &run); code != http.StatusAccepted || err != nil {
		t.Fatalf("a big import on node 1: %d %s", code, body)
	}
	waitFor(t, "node 2 to know node 1's running job", 10*time.Second, func() bool {
		code, _ := b.Admin("/admin/v1/imports/" + run.ID)
		return code == 200
	})
	if code, body := b.Do("DELETE", "/admin/v1/imports/"+run.ID, nil, auth); code != http.StatusAccepted {
		t.Fatalf("DELETE of node 1's running job on node 2: %d %s", code, body)
	}
	if ended := waitImport(t, a, run.ID); ended.Status != imports.StatusCanceled || ended.Rows.Read >= 60_000 {
		t.Fatalf("node 1's job canceled from node 2: %+v", ended)
	}

	a.Stop()
	code, body = b.Do("DELETE", "/admin/v1/imports/"+j.ID, nil, auth)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "node_unavailable") || !strings.Contains(string(body), done.Node) {
		t.Fatalf("DELETE on node 2 while node 1 is down: %d %s", code, body)
	}
	if code, _ := b.Admin("/admin/v1/imports/01JNOSUCHJOB0000000000000"); code != http.StatusNotFound {
		t.Fatalf("an unknown job on node 2: %d", code)
	}
	canarytest.ScanStreams(t, nc.jetStream(t), "NATS streams", "row-canary")
}
