package imports_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// contractMapping imports orders under contract, by user id.
const contractMapping = `{"event":"Order Completed","identity":{"column":"customer","kind":"user_id"},
 "natural_key":["order_id"],"timestamp":{"column":"at","format":"unix"},
 "properties":{"order_id":"order_id","total":{"column":"total","type":"number"}},
 "lawful_basis":{"basis":"contract"},"purposes":["personalization"]}`

// ordersReader generates n contract orders as CSV, streaming; closing it
// stops the generator.
func ordersReader(n int) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		at := time.Now().Add(-time.Hour).Unix()
		var b strings.Builder
		b.WriteString("order_id,customer,at,total\n")
		for i := range n {
			fmt.Fprintf(&b, "o-%07d,c-%d,%d,%d.%02d\n", i, i%5000, at, i%300, i%100)
			if b.Len() > 64<<10 {
				if _, err := io.WriteString(pw, b.String()); err != nil {
					return
				}
				b.Reset()
			}
		}
		_, _ = io.WriteString(pw, b.String())
		pw.Close()
	}()
	return pr
}

// TestImportResumesAfterRestart: Vigie stopped in the middle of a job
// resumes it at its last committed batch at the next start, and the file
// ends imported once: every row stored once, the counts exact.
func TestImportResumesAfterRestart(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	const n = 60_000
	code, body := post(t, in, "", contractMapping, ordersReader(n), nil)
	if code != 202 {
		t.Fatalf("post: %d %s", code, body)
	}
	id := jobID(t, body)
	until(t, "the job to be running", func() bool {
		j := getJob(t, in, id)
		return j.Status == imports.StatusRunning && j.Rows.Read > 0
	})
	mid := getJob(t, in, id)
	in.Restart()
	j := wait(t, in, id)
	if mid.Rows.Read >= n {
		t.Fatalf("the job ended before the restart: %+v", mid.Rows)
	}
	if j.Status != imports.StatusDone || j.Rows != (imports.Rows{Read: n, Accepted: n}) {
		t.Fatalf("after the restart: %s %+v %v (%s)", j.Status, j.Rows, j.SkippedByReason, j.Error)
	}
	if got := eventCount(t, in); got != n {
		t.Fatalf("%d events stored for %d rows", got, n)
	}
	t.Logf("restarted after %d rows", mid.Rows.Read)
}

// noPlugins runs no plugin: the tests that count rows need no segmenter.
func noPlugins(c *config.Config) { c.Plugins = []config.Plugin{} }
