package imports_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestMain lets this test binary serve the built-in plugins when Vigie
// re-executes it as "<binary> plugin <name>".
func TestMain(m *testing.M) {
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

// shopSegments configures the built-in segments plugin with a segment of
// buyers and a score per order.
func shopSegments(c *config.Config) {
	c.Plugins = []config.Plugin{{Name: "segments", Config: map[string]any{
		"segments": []any{
			map[string]any{"name": "buyers", "description": "Ordered in the last 30 days.",
				"when": `profile.count("track", "Order Completed", "30d") >= 1`},
			map[string]any{"name": "repeat-buyers", "description": "Two orders or more in 30 days.",
				"when": `profile.count("track", "Order Completed", "30d") >= 2`, "purposes": []any{"marketing"}},
		},
	}}}
}

// post sends an import: the mapping (JSON) and the file as multipart parts,
// streamed from file; query is added to the URL.
func post(t testing.TB, in *proxytest.Instance, query, mapping string, file io.Reader, hdr http.Header) (int, []byte) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := mw.WriteField("mapping", mapping)
		if err == nil {
			var fw io.Writer
			if fw, err = mw.CreateFormFile("file", "orders.csv"); err == nil {
				_, err = io.Copy(fw, file)
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequest("POST", in.URL+"/admin/v1/imports"+query, pr)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+in.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	pr.Close() // the writer stops if the server answered before reading it all
	if err != nil {
		t.Fatalf("post import: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// create posts an import and returns its job, failing unless it is 202.
func create(t testing.TB, in *proxytest.Instance, query, mapping, file string) imports.Job {
	t.Helper()
	code, body := post(t, in, query, mapping, strings.NewReader(file), nil)
	if code != http.StatusAccepted {
		t.Fatalf("post import: %d %s", code, body)
	}
	var j imports.Job
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// getJob reads a job through the admin API.
func getJob(t testing.TB, in *proxytest.Instance, id string) imports.Job {
	t.Helper()
	code, body := in.Admin("/admin/v1/imports/" + id)
	if code != 200 {
		t.Fatalf("get import: %d %s", code, body)
	}
	var j imports.Job
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// wait polls job id until it ended.
func wait(t testing.TB, in *proxytest.Instance, id string) imports.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j := getJob(t, in, id)
		switch j.Status {
		case imports.StatusDone, imports.StatusFailed, imports.StatusCanceled:
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("import %s still %s: %+v", id, j.Status, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventCount is the number of stored events of the demo site.
func eventCount(t testing.TB, in *proxytest.Instance) int64 {
	t.Helper()
	st, err := in.Server.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Events["demo"]
}

// until polls cond for up to 20 s.
func until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// day formats a time n days ago as a date.
func day(n int) string { return time.Now().UTC().AddDate(0, 0, -n).Format("2006-01-02") }

// csvOf joins rows into a CSV body.
func csvOf(rows ...string) string {
	var b bytes.Buffer
	for _, r := range rows {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}

// jobID reads the id of a job answer.
func jobID(t testing.TB, body []byte) string {
	t.Helper()
	var j imports.Job
	if err := json.Unmarshal(body, &j); err != nil || j.ID == "" {
		t.Fatalf("job answer: %s", body)
	}
	return j.ID
}

// unixHourAgo is the Unix time an hour ago, as text.
func unixHourAgo() string { return strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10) }
