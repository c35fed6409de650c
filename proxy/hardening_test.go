package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// startLean starts a server without plugins (these tests exercise the
// HTTP edge only) whose read timeout is 1 s.
func startLean(t *testing.T, opts ...proxytest.Option) *proxytest.Instance {
	t.Helper()
	return proxytest.Start(t, append([]proxytest.Option{func(c *config.Config) {
		c.Plugins = []config.Plugin{}
		c.Limits.ReadTimeout = config.Duration(time.Second)
	}}, opts...)...)
}

// rawAnswer is a response read off a raw TCP connection.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
}

// rawExchange writes req as is on a new connection to addr (half-closing
// the connection afterwards when closeWrite), then reads one response.
func rawExchange(t *testing.T, addr, req string, closeWrite bool) rawAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	go func() {
		_, _ = io.WriteString(conn, req)
		if closeWrite {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: body}
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// leaks are what an error body must never hold: socket addresses, file
// paths, Go error texts and formatting mistakes.
var (
	leakAddr  = regexp.MustCompile(`\d{1,3}(\.\d{1,3}){3}(:\d+)?|\[?[0-9a-f]*::[0-9a-f:]*\]?:\d+`)
	leakWords = []string{"tcp", "read ", "EOF", "%!", "i/o", "collect:", "json:", "Go ", "struct", "*", "/tmp", "/home", "/root", "vigie-data", "badger", "<nil>"}
)

func checkNoInternals(t *testing.T, body []byte, dataDir string) {
	t.Helper()
	if m := leakAddr.Find(body); m != nil {
		t.Errorf("body names an address %q: %s", m, body)
	}
	for _, w := range append(leakWords, dataDir) {
		if bytes.Contains(body, []byte(w)) {
			t.Errorf("body contains %q: %s", w, body)
		}
	}
}

// TestErrorBodiesNameNoInternals: every refusal Vigie answers itself names
// the problem in the client's terms and never a socket address, a path or a
// Go error text (issue 8, defect 6), including the defect's own case, a
// body that does not arrive before the read timeout.
func TestErrorBodiesNameNoInternals(t *testing.T) {
	in := startLean(t)
	addr := in.Server.Addr()
	auth := basic("demo")
	adminAuth := "Bearer " + in.AdminToken()
	post := func(path, hdr, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\n" + hdr +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	admin := func(method, path, body string) string {
		return method + " " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + adminAuth + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	corruptGzip := string([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3})
	for _, c := range []struct {
		name       string
		req        string
		closeWrite bool
		status     int
		code       string
		field      string
	}{
		{"body slower than the read timeout (the defect's case)",
			"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nContent-Length: 100\r\n\r\n{\"event\":", false, 408, "body_timeout", ""},
		{"chunked body slower than the read timeout",
			"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"bat\r\n", false, 408, "body_timeout", ""},
		{"body shorter than its Content-Length",
			"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nContent-Length: 100\r\n\r\n{\"event\":", true, 400, "bad_content_length", ""},
		{"chunked body without its last chunk",
			"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"bat\r\n", true, 400, "incomplete_body", ""},
		{"malformed chunk size",
			"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", false, 400, "unreadable_body", ""},
		{"corrupt gzip", post("/v1/track", "Content-Encoding: gzip\r\n", corruptGzip), false, 400, "bad_encoding", ""},
		{"unsupported encoding", post("/v1/track", "Content-Encoding: br\r\n", `{}`), false, 415, "unsupported_encoding", ""},
		{"declared body over the limit", "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\nContent-Length: 999999\r\n\r\n{", false, 413, "too_large", ""},
		{"malformed JSON", post("/v1/track", "", `{"event":"E",}`), false, 400, "malformed_json", ""},
		{"JSON cut short", post("/v1/track", "", `{"event":"E"`), false, 400, "malformed_json", ""},
		{"duplicate member quoting a value", post("/v1/track", "", `{"a@example.com":1,"a@example.com":2}`), false, 400, "malformed_json", ""},
		{"wrong field type", post("/v1/track", "", `{"event":5,"userId":"u"}`), false, 400, "invalid_event", "event"},
		{"batch not an object", post("/v1/batch", "", `[1]`), false, 400, "invalid_batch", "body"},
		{"too many events", post("/v1/batch", "", `{"batch":[`+strings.Repeat(`{},`, 2500)+`{}]}`), false, 400, "too_many_events", ""},
		{"pixel with a bad consent", "GET /v1/p.gif?k=demo&consent=analytics:2 HTTP/1.1\r\nHost: x\r\n\r\n", false, 400, "invalid_consent", ""},
		{"admin: bad cursor", admin("GET", "/admin/v1/events?site=demo&after=!!", ""), false, 400, "invalid_cursor", ""},
		{"admin: rewrite with a wrong type", admin("POST", "/admin/v1/email/rewrite", `{"site":"demo","recipients":"u"}`), false, 400, "invalid_request", "recipients"},
		{"admin: rewrite with an unknown field", admin("POST", "/admin/v1/email/rewrite", `{"site":"demo","sitee":1}`), false, 400, "invalid_request", "sitee"},
		{"admin: rewrite not JSON", admin("POST", "/admin/v1/email/rewrite", `{"site":`), false, 400, "malformed_json", ""},
		{"admin: rewrite with a bad base URL", admin("POST", "/admin/v1/email/rewrite", `{"site":"demo","campaign":"c","html":"<a href='https://x.example/'>x</a>","merge_tag":"*|ID|*","base_url":"ftp://x"}`), false, 400, "invalid_request", "base_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := rawExchange(t, addr, c.req, c.closeWrite)
			if a.status != c.status || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("answer %d %q, want %d JSON: %s", a.status, a.header.Get("Content-Type"), c.status, a.body)
			}
			var e struct {
				Code, Error, Field string
			}
			if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
				t.Fatalf("body %s: %v", a.body, err)
			}
			if e.Code != c.code || e.Field != c.field {
				t.Fatalf("code %q field %q, want %q %q: %s", e.Code, e.Field, c.code, c.field, a.body)
			}
			checkNoInternals(t, a.body, in.Config.DataDir)
		})
	}
}

// TestAnswersAreJSONExceptDocumented: Vigie answers JSON wherever a handler
// can run, headers over max_header_bytes included; the only plain-text
// answers are net/http's own, before any handler, and each is listed in
// README.md next to the promise of JSON bodies (issue 8, defect 7).
func TestAnswersAreJSONExceptDocumented(t *testing.T) {
	in := startLean(t)
	addr := in.Server.Addr()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := []byte(strings.Join(strings.Fields(string(raw)), " "))
	big := func(n int) string { return "X-Big: " + strings.Repeat("a", n) + "\r\n" }
	get := func(extra string) string { return "GET /v1/nope HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n" }
	for _, c := range []struct {
		name   string
		req    string
		status int
		// plain is the README's words for a plain-text answer; "" means
		// the answer must be JSON.
		plain string
	}{
		{"headers over max_header_bytes", get(big(100 << 10)), 431, ""},
		{"unknown path", get(""), 404, ""},
		{"wrong method", "DELETE /v1/track HTTP/1.1\r\nHost: x\r\n\r\n", 405, ""},
		{"request target *", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
		{"headers over 4 × max_header_bytes", get(big(300 << 10)), 431, "431 for headers over 4 × `limits.max_header_bytes`"},
		{"malformed Content-Length", "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n", 400, "malformed `Content-Length`"},
		{"two Content-Lengths", "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "malformed `Content-Length`"},
		{"malformed request line", "GET\r\nHost: x\r\n\r\n", 400, "malformed request line"},
		{"invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", 400, "invalid header name or value"},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing or malformed `Host`"},
		{"unsupported HTTP version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "505 for an HTTP version other than 1.x"},
		{"unknown Transfer-Encoding", "POST /v1/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "501 for a `Transfer-Encoding` other than chunked"},
		{"unknown Expect", "POST /v1/track HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}", 417, "417 (empty) for an `Expect` other than `100-continue`"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := rawExchange(t, addr, c.req, false)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			isJSON := a.header.Get("Content-Type") == "application/json" && json.Valid(a.body)
			switch {
			case c.plain == "" && !isJSON:
				t.Fatalf("not JSON: %q %s", a.header.Get("Content-Type"), a.body)
			case c.plain != "" && isJSON:
				t.Fatalf("documented as plain text but JSON: %s", a.body)
			case c.plain != "" && !bytes.Contains(readme, []byte(c.plain)):
				t.Fatalf("README.md does not list %q", c.plain)
			}
			if c.plain == "" {
				checkNoInternals(t, a.body, in.Config.DataDir)
			}
		})
	}
}

// metricValue reads one sample of the server's /metrics ("" if absent).
func metricValue(t *testing.T, in *proxytest.Instance, series string) string {
	t.Helper()
	_, body := in.Do("GET", "/metrics", nil, nil)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestAuthFailuresRateLimitedPerNetwork: failed authentications are
// limited per client network (/24, /48); a network over its budget gets
// 429 with Retry-After for every attempt, the right key included, while
// the right key keeps working from every other network (issue 8, defect 8).
func TestAuthFailuresRateLimitedPerNetwork(t *testing.T) {
	const burst = 5
	in := startLean(t, func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.Auth = config.Auth{FailureBurst: burst, FailureRefill: config.Duration(time.Minute), MaxNetworks: 100}
	})
	type attempt struct {
		method, path, body string
		hdr                http.Header
	}
	from := func(xff string, a attempt) (int, http.Header, []byte) {
		req, err := http.NewRequest(a.method, in.URL+a.path, strings.NewReader(a.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range a.hdr {
			req.Header[k] = v
		}
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	good := attempt{"POST", "/v1/track", `{"event":"E","anonymousId":"a"}`, http.Header{"Authorization": {basic("demo")}}}
	goodAdmin := attempt{"GET", "/admin/v1/stats", "", http.Header{"Authorization": {"Bearer " + in.AdminToken()}}}
	// Every way of presenting a key, each wrong.
	wrong := []attempt{
		{"POST", "/v1/track", `{"event":"E","anonymousId":"a"}`, http.Header{"Authorization": {basic("guess")}}},
		{"POST", "/v1/batch", `{"writeKey":"guess","batch":[{"type":"track","event":"E","anonymousId":"a"}]}`, nil},
		{"GET", "/v1/p.gif?k=guess", "", nil},
		{"GET", "/v1/projects/guess/settings", "", nil},
		{"GET", "/admin/v1/stats", "", http.Header{"Authorization": {"Bearer guess"}}},
	}

	// The attacker's network: its hosts and spoofed left-most
	// X-Forwarded-For entries all count as one network.
	attackers := []string{"198.51.100.7", "198.51.100.200", "10.9.9.9, 198.51.100.7", "203.0.113.50, 198.51.100.8"}
	passed, throttled := 0, 0
	for i := range 40 {
		code, hdr, body := from(attackers[i%len(attackers)], wrong[i%len(wrong)])
		switch code {
		case 401, 404:
			passed++
		case 429:
			throttled++
			if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 without Retry-After: %v", hdr)
			}
			if e := decodeErr(t, body); e["code"] != "too_many_auth_failures" {
				t.Fatalf("429 body %s", body)
			}
		default:
			t.Fatalf("wrong key answered %d: %s", code, body)
		}
	}
	if passed != burst || throttled != 40-burst {
		t.Fatalf("%d wrong keys checked and %d throttled, want %d and %d", passed, throttled, burst, 40-burst)
	}
	// Throttled, the attacker's network learns nothing: the right keys
	// get the same 429.
	if code, _, _ := from("198.51.100.99", good); code != 429 {
		t.Fatalf("right key from the throttled network: %d, want 429", code)
	}
	if code, _, _ := from("198.51.100.99", goodAdmin); code != 429 {
		t.Fatalf("right admin token from the throttled network: %d, want 429", code)
	}
	// Everyone else is unaffected.
	for _, ip := range []string{"198.51.101.7", "203.0.113.9", "2001:db8:1::1"} {
		if code, _, body := from(ip, good); code != 200 {
			t.Fatalf("right key from %s: %d %s", ip, code, body)
		}
		if code, _, body := from(ip, goodAdmin); code != 200 {
			t.Fatalf("admin token from %s: %d %s", ip, code, body)
		}
	}
	// An IPv6 network is its /48.
	for i := range burst + 1 {
		code, _, _ := from("2001:db8:2:"+strconv.Itoa(i)+"::1", wrong[0])
		if want := map[bool]int{true: 429, false: 401}[i == burst]; code != want {
			t.Fatalf("IPv6 attempt %d: %d, want %d", i, code, want)
		}
	}
	if code, _, _ := from("2001:db8:3::1", good); code != 200 {
		t.Fatalf("right key from another /48: %d", code)
	}

	if v := metricValue(t, in, `vigie_auth_failures_total{kind="admin"}`); v != "1" {
		t.Fatalf("admin failures metric %q", v)
	}
	if v := metricValue(t, in, `vigie_auth_failures_total{kind="write_key"}`); v != strconv.Itoa(2*burst-1) {
		t.Fatalf("write key failures metric %q", v)
	}
	if v := metricValue(t, in, `vigie_auth_throttled_total{kind="write_key"}`); v == "" || v == "0" {
		t.Fatalf("throttled metric %q", v)
	}
}

// TestAuthSchemeCaseInsensitive: the Basic and Bearer schemes are
// case-insensitive (RFC 7235) and may be followed by several spaces
// (issue 8, defect 10).
func TestAuthSchemeCaseInsensitive(t *testing.T) {
	in := startLean(t)
	cred := base64.StdEncoding.EncodeToString([]byte("demo:"))
	for _, h := range []string{"Basic " + cred, "basic " + cred, "BASIC " + cred, "bAsIc  " + cred, "Basic " + strings.TrimRight(cred, "=")} {
		code, body := in.Do("POST", "/v1/track", []byte(`{"event":"E","anonymousId":"a"}`), http.Header{"Authorization": {h}})
		if code != 200 {
			t.Errorf("%q: %d %s", h, code, body)
		}
	}
	tok := in.AdminToken()
	for _, scheme := range []string{"Bearer ", "bearer ", "BEARER ", "Bearer  ", "beARer\t"} {
		if code, body := in.Do("GET", "/admin/v1/stats", nil, http.Header{"Authorization": {scheme + tok}}); code != 200 {
			t.Errorf("%q<token>: %d %s", scheme, code, body)
		}
	}
	for _, h := range []struct{ scheme, suffix string }{{"Bearer", ""}, {"Bearerx ", ""}, {"Basic ", ""}, {"bearer ", "x"}} {
		if code, _ := in.Do("GET", "/admin/v1/stats", nil, http.Header{"Authorization": {h.scheme + tok + h.suffix}}); code != 401 {
			t.Errorf("%q<token>%q accepted: %d", h.scheme, h.suffix, code)
		}
	}
}

// TestExtremeJSONRejectedOverHTTP: a single event with a number parsers
// refuse gets a 400 naming the field; in a batch only that event is
// refused and the others are stored (issue 8, defect 9).
func TestExtremeJSONRejectedOverHTTP(t *testing.T) {
	in := startLean(t)
	code, body := in.Post("/v1/track", "demo", `{"event":"E","anonymousId":"a","properties":{"a":{"b":1e400}}}`)
	if e := decodeErr(t, body); code != 400 || e["field"] != "properties.a.b" || e["code"] != "invalid_event" {
		t.Fatalf("1e400: %d %s", code, body)
	}
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	code, body = in.Post("/v1/batch", "demo", `{"batch":[{"type":"track","event":"ok","anonymousId":"a"},
		{"type":"identify","userId":"u","traits":{"t":`+deep+`}},
		{"type":"track","event":"E","anonymousId":"a","properties":{"n":`+strings.Repeat("9", 5000)+`}}]}`)
	var e struct {
		Errors []struct {
			Index int    `json:"index"`
			Field string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || code != 400 || len(e.Errors) != 2 ||
		e.Errors[0].Index != 1 || !strings.HasPrefix(e.Errors[0].Field, "batch[1].traits.t[0][0]") ||
		e.Errors[1].Index != 2 || e.Errors[1].Field != "batch[2].properties.n" {
		t.Fatalf("batch: %d %s", code, body)
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 1 {
		t.Fatalf("stored %d events, want the good one", n)
	}
}
