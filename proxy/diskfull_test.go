package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/tmpfstest"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/storage"
)

// fillBatch is a batch of n consented events (kept with their ~1 KB of
// properties) with message ids prefix-0…prefix-(n-1).
func fillBatch(prefix string, n int) string {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	pad := strings.Repeat("x", 1000)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Fill","anonymousId":"a-%d","messageId":"%s-%d","context":{"consent":{"analytics":true}},"properties":{"pad":"%s"}}`,
			i%50, prefix, i, pad)
	}
	b.WriteString(`]}`)
	return b.String()
}

// send makes a request and returns the answer's status, headers and body.
func send(t *testing.T, method, url, writeKey, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if writeKey != "" {
		req.SetBasicAuth(writeKey, "")
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", browserUA)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (did the server die?)", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// assertDiskFull checks a disk_full answer: 503, Retry-After, JSON code.
func assertDiskFull(t *testing.T, what string, code int, h http.Header, body []byte) {
	t.Helper()
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("%s on a full disk: %d Retry-After=%q %s", what, code, h.Get("Retry-After"), body)
	}
	if m := decodeErr(t, body); m["code"] != "disk_full" {
		t.Fatalf("%s on a full disk: body %s", what, body)
	}
}

func storedEvents(t *testing.T, in *proxytest.Instance) int64 {
	t.Helper()
	st, err := in.Server.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Events["demo"]
}

func metricsText(t *testing.T, in *proxytest.Instance) string {
	t.Helper()
	_, _, b := send(t, "GET", in.URL+"/metrics", "", "")
	return string(b)
}

// TestDiskFullOnRealFilesystem runs a whole Vigie on a 200 MiB tmpfs, fills
// the disk with events and a filler file, and checks that Vigie refuses
// (503 disk_full) instead of dying of a SIGBUS in Badger, says why in
// /readyz, the metrics and one log line, keeps e-mail pixels and redirects
// working, and accepts events again, without a restart, once the filler is
// removed; nothing accepted before is lost. Without the disk-full guard this
// test process is killed by a SIGBUS in badger's logFile.writeEntry.
func TestDiskFullOnRealFilesystem(t *testing.T) {
	mnt := tmpfstest.Mount(t, 200<<20)
	const reserve = 24 << 20
	in := proxytest.Start(t, func(c *config.Config) {
		c.DataDir = filepath.Join(mnt, "data")
		c.Storage.MinFreeBytes = reserve
		c.Plugins = []config.Plugin{}
	})
	// A consenting recipient's e-mail, rewritten before the disk fills.
	if code, b := in.Post("/v1/identify", "demo", `{"userId":"user-42","context":{"consent":{"analytics":true,"marketing":true}}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, b)
	}
	rw, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "c", "recipients": []string{"user-42"}, "honeypot": false,
		"html": `<html><body><a href="https://shop.example/p">P</a></body></html>`})
	code, out := in.Do("POST", "/admin/v1/email/rewrite", rw, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	var mail struct{ Messages []struct{ HTML string } }
	if err := json.Unmarshal(out, &mail); err != nil || len(mail.Messages) != 1 {
		t.Fatalf("rewrite: %s", out)
	}
	accepted := int64(1)

	// Leave a little more than the reserve, then send events until refused.
	filler := tmpfstest.Fill(t, mnt, "filler", reserve+6<<20)
	// Vigie measures at least every second (and after every few MiB it
	// writes): wait until it has seen the filler.
	deadline := time.Now().Add(5 * time.Second)
	for in.Server.Store().Disk().FreeBytes > reserve+7<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("free space not measured again: %+v", in.Server.Store().Disk())
		}
		time.Sleep(10 * time.Millisecond)
	}
	batches := 0
	var refused string
	for ; ; batches++ {
		body := fillBatch(fmt.Sprintf("b%d", batches), 300)
		code, h, b := send(t, "POST", in.URL+"/v1/batch", "demo", body)
		if code == 200 {
			accepted += 300
			if batches > 100 {
				t.Fatalf("still accepting after %d batches; free %d bytes", batches, tmpfstest.Free(t, mnt))
			}
			continue
		}
		assertDiskFull(t, "batch", code, h, b)
		refused = body
		break
	}
	t.Logf("refused after %d accepted batches; %d bytes free", batches, tmpfstest.Free(t, mnt))
	if free := tmpfstest.Free(t, mnt); free < reserve/2 {
		t.Fatalf("only %d bytes left free: the reserve was not kept", free)
	}

	// Alive and saying why.
	if code, _, b := send(t, "GET", in.URL+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, b)
	}
	code, _, b := send(t, "GET", in.URL+"/readyz", "", "")
	if code != 503 || !bytes.Contains(b, []byte(`"reason":"disk_full"`)) {
		t.Fatalf("readyz on a full disk: %d %s", code, b)
	}
	if m := metricsText(t, in); !strings.Contains(m, "\nvigie_disk_full 1\n") || !strings.Contains(m, `vigie_events_rejected_total{reason="disk_full"}`) ||
		!strings.Contains(m, "\nvigie_disk_free_bytes ") {
		t.Fatalf("metrics on a full disk:\n%s", grepLines(m, "disk"))
	}
	// Every ingestion route refuses; e-mail hits still answer, unstored.
	code, h, b := send(t, "POST", in.URL+"/v1/track", "demo", `{"event":"E","anonymousId":"x","context":{"consent":{"analytics":true}}}`)
	assertDiskFull(t, "track", code, h, b)
	code, h, b = send(t, "GET", in.URL+"/v1/p.gif?k=demo&url=https://shop.example/&consent=analytics", "", "")
	assertDiskFull(t, "pixel", code, h, b)
	before := storedEvents(t, in)
	if code, h, _ := send(t, "GET", pixelRe.FindStringSubmatch(mail.Messages[0].HTML)[1], "", ""); code != 200 || h.Get("Content-Type") != "image/gif" {
		t.Fatalf("e-mail open on a full disk: %d %v", code, h)
	}
	if code, h, _ := send(t, "GET", clickRe.FindStringSubmatch(mail.Messages[0].HTML)[1], "", ""); code != http.StatusFound || h.Get("Location") != "https://shop.example/p" {
		t.Fatalf("e-mail click on a full disk: %d %v", code, h)
	}
	for i := range 5 {
		code, h, b := send(t, "POST", in.URL+"/v1/batch", "demo", fillBatch(fmt.Sprintf("r%d", i), 300))
		assertDiskFull(t, "batch", code, h, b)
	}
	if n := storedEvents(t, in); n != before || n != accepted {
		t.Fatalf("stored %d events on a full disk (had %d, accepted %d)", n, before, accepted)
	}

	// Space comes back: ingestion resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, _, b := send(t, "GET", in.URL+"/readyz", "", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after space was freed: %d %s", code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, b := send(t, "POST", in.URL+"/v1/batch", "demo", refused); code != 200 {
		t.Fatalf("the refused batch, retried after recovery: %d %s", code, b)
	}
	accepted += 300
	if n := storedEvents(t, in); n != accepted {
		t.Fatalf("%d events stored, %d accepted", n, accepted)
	}
	if m := metricsText(t, in); !strings.Contains(m, "\nvigie_disk_full 0\n") {
		t.Fatalf("metrics after recovery:\n%s", grepLines(m, "disk"))
	}
	// Everything accepted reaches JetStream (the publisher held back while
	// the disk was full).
	waitOutboxEmpty(t, in)
	logs := in.Logs()
	if n := strings.Count(logs, "disk almost full"); n != 1 {
		t.Fatalf("%d disk-full warnings, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "disk space available again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, logs)
	}
}

// TestStartOnFullDisk: Start on a filesystem already short of space fails
// with ErrDiskFull before Badger maps a file (no SIGBUS, no crash).
func TestStartOnFullDisk(t *testing.T) {
	mnt := tmpfstest.Mount(t, 64<<20)
	tmpfstest.Fill(t, mnt, "filler", 8<<20)
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(mnt, "data")
	cfg.Storage.MinFreeBytes = 16 << 20
	cfg.Plugins = []config.Plugin{}
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys.MasterKey = config.Secret(mk.Encode())
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if !errors.Is(err, storage.ErrDiskFull) {
		if err == nil {
			_ = srv.Shutdown(context.Background())
		}
		t.Fatalf("start on a full disk: %v, want ErrDiskFull", err)
	}
	if _, serr := os.Stat(filepath.Join(cfg.DataDir, "badger")); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("badger dir created on a full disk: %v", serr)
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
