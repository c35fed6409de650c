package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.yaml.in/yaml/v3"

	"github.com/vigie-dev/vigie/proxy/imports"
)

const importUsage = `usage: vigie import FILE --map map.yaml [--dry-run] [--server URL] [--site ID] [--idempotency-key KEY]

Imports FILE (CSV with a header row, or NDJSON) into a running Vigie: posts
it with its mapping (map.yaml, see README.md "Import from your systems") to
POST /admin/v1/imports, then follows the job with a progress bar until it
ends and prints its counts and first errors. The rows go through the same
consent gate, pseudonymization and scrubbing as every hit; a row already
imported adds nothing. The admin token is read from VIGIE_ADMIN_TOKEN.
Interrupting the command leaves the job running in the server.

Exit status: 0 when the job is done (rows may have been skipped or failed:
see the counts), 1 when it failed, was canceled, or could not be posted.`

// importCmd runs "vigie import".
func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("import", importUsage, args, stdout, stderr)
	mapPath := fs.String("map", "", "the mapping, YAML (or JSON) (required)")
	dry := fs.Bool("dry-run", false, "check and count the rows, store nothing")
	server := fs.String("server", "http://127.0.0.1:8080", "the running Vigie")
	site := fs.String("site", "", "the site to import into (default: the only one)")
	key := fs.String("idempotency-key", "", "posting again with this key gives the same job instead of a new one")
	// FILE may come before or after the flags.
	var files []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 || *mapPath == "" {
		return errors.New(importUsage)
	}
	tok := os.Getenv("VIGIE_ADMIN_TOKEN")
	if tok == "" {
		return errors.New("vigie import: the admin token is needed in VIGIE_ADMIN_TOKEN")
	}
	mapping, err := readMapping(*mapPath, files[0])
	if err != nil {
		return err
	}
	c := &importClient{base: strings.TrimSuffix(*server, "/"), token: tok, http: &http.Client{}, stderr: stderr,
		tty: isTerminal(stderr)}
	j, err := c.post(ctx, files[0], mapping, *site, *dry, *key)
	if err != nil {
		return fmt.Errorf("vigie import: %w", err)
	}
	fmt.Fprintf(stdout, "Import %s queued (%s). Follow it: GET %s/admin/v1/imports/%s\n", j.ID, dryWord(j.DryRun), c.base, j.ID)
	j, err = c.follow(ctx, j)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stdout, "Stopped following; import %s goes on in the server.\n", j.ID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("vigie import: %w", err)
	}
	c.summary(ctx, stdout, j)
	if j.Status != imports.StatusDone {
		return fmt.Errorf("vigie import: the import %s", j.Status)
	}
	return nil
}

func dryWord(dry bool) string {
	if dry {
		return "dry run: nothing will be stored"
	}
	return "rows will be stored"
}

// readMapping reads the mapping file (YAML, or JSON which is YAML), turns
// it into the JSON the API takes and checks it as the server will
// (without the server's configuration: purposes and retention are checked
// there).
func readMapping(path, file string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vigie import: --map: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("vigie import: %s is not valid YAML: %w", path, err)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("vigie import: %s: %w", path, err)
	}
	if _, err := imports.ParseMapping(out, imports.Options{FileName: file}); err != nil {
		return nil, fmt.Errorf("vigie import: %s: %w", path, err)
	}
	return out, nil
}

// importClient talks to the import API.
type importClient struct {
	base, token string
	http        *http.Client
	stderr      io.Writer
	tty         bool
}

// bar is a progress bar on stderr, shown only on a terminal.
func (c *importClient) bar(max int64, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(c.stderr),
		progressbar.OptionSetVisibility(c.tty),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.stderr) }),
	)
}

// post uploads file with mapping, streaming, with a progress bar.
func (c *importClient) post(ctx context.Context, file string, mapping []byte, site string, dry bool, key string) (imports.Job, error) {
	f, err := os.Open(file)
	if err != nil {
		return imports.Job{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return imports.Job{}, err
	}
	bar := c.bar(fi.Size(), "uploading")
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := mw.WriteField("mapping", string(mapping))
		if err == nil {
			var fw io.Writer
			if fw, err = mw.CreateFormFile("file", filepath.Base(file)); err == nil {
				_, err = io.Copy(io.MultiWriter(fw, bar), f)
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	q := url.Values{}
	if site != "" {
		q.Set("site", site)
	}
	if dry {
		q.Set("dry_run", "true")
	}
	endpoint := c.base + "/admin/v1/imports"
	if len(q) > 0 {
		endpoint += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, pr)
	if err != nil {
		return imports.Job{}, fmt.Errorf("--server: %w", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+c.token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	_ = bar.Finish()
	if err != nil {
		return imports.Job{}, fmt.Errorf("posting to the server: %w", err)
	}
	defer resp.Body.Close()
	var j imports.Job
	if err := decodeAnswer(resp, http.StatusAccepted, &j); err != nil {
		return j, err
	}
	return j, nil
}

// decodeAnswer decodes a JSON answer of status want into v, or returns the
// server's error.
func decodeAnswer(resp *http.Response, want int, v any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	if resp.StatusCode != want {
		var e struct{ Error, Field string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return fmt.Errorf("the server answered %d: %s", resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the server's answer is not valid JSON: %w", err)
	}
	return nil
}

// get reads path of the API into v.
func (c *importClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("asking the server: %w", err)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, http.StatusOK, v)
}

// pollInterval is how often follow asks for the job.
var pollInterval = 300 * time.Millisecond

// follow polls job j until it ends, with a progress bar over its file.
func (c *importClient) follow(ctx context.Context, j imports.Job) (imports.Job, error) {
	bar := c.bar(j.File.Bytes, "importing")
	defer func() { _ = bar.Exit() }()
	for {
		switch j.Status {
		case imports.StatusDone, imports.StatusFailed, imports.StatusCanceled:
			_ = bar.Set64(j.Progress.BytesDone)
			_ = bar.Finish()
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(pollInterval):
		}
		id := j.ID
		if err := c.get(ctx, "/admin/v1/imports/"+url.PathEscape(id), &j); err != nil {
			if ctx.Err() != nil {
				return j, ctx.Err()
			}
			return j, err
		}
		desc := fmt.Sprintf("importing: %d rows, %d accepted", j.Rows.Read, j.Rows.Accepted)
		if j.Progress.Waiting != "" {
			desc += " (waiting: " + j.Progress.Waiting + ")"
		}
		bar.Describe(desc)
		_ = bar.Set64(j.Progress.BytesDone)
	}
}

// summary prints the job's counts by reason and its first errors.
func (c *importClient) summary(ctx context.Context, w io.Writer, j imports.Job) {
	fmt.Fprintf(w, "Import %s %s: %d rows read, %d %s, %d skipped, %d failed.\n", j.ID, j.Status, j.Rows.Read, j.Rows.Accepted,
		map[bool]string{true: "would be accepted", false: "accepted"}[j.DryRun], j.Rows.Skipped, j.Rows.Failed)
	if j.Error != "" {
		fmt.Fprintf(w, "  %s\n", j.Error)
	}
	for _, g := range []struct {
		name string
		m    map[string]int64
	}{{"skipped", j.SkippedByReason}, {"failed", j.FailedByReason}} {
		keys := make([]string, 0, len(g.m))
		for k := range g.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s %-24s %d\n", g.name, k, g.m[k])
		}
	}
	if j.Errors.Stored == 0 {
		return
	}
	var page struct {
		Errors []imports.RowError `json:"errors"`
	}
	if err := c.get(ctx, "/admin/v1/imports/"+url.PathEscape(j.ID)+"/errors?limit=10", &page); err != nil {
		return
	}
	var b bytes.Buffer
	for _, e := range page.Errors {
		where := e.Field
		if e.Column != "" {
			where += ", column " + e.Column
		}
		if where != "" {
			where = " (" + where + ")"
		}
		fmt.Fprintf(&b, "  row %d: %s%s: %s\n", e.Row, e.Reason, where, e.Message)
	}
	fmt.Fprintf(w, "First errors (all of them: GET %s/admin/v1/imports/%s/errors):\n%s", c.base, j.ID, b.String())
}
