package collect

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zl(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func rawDeflate(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestReadBody(t *testing.T) {
	payload := []byte(`{"batch":[{"type":"track","userId":"u","event":"E"}]}`)
	big := bytes.Repeat([]byte("a"), 1000)
	tests := []struct {
		name        string
		body        []byte
		encoding    string
		contentType string
		max         int64
		want        []byte
		sentinel    error
	}{
		{"plain", payload, "", "application/json", 0, payload, nil},
		{"identity", payload, "identity", "text/plain", 0, payload, nil},
		{"gzip", gz(t, payload), "gzip", "application/json", 0, payload, nil},
		{"x-gzip, mixed case", gz(t, payload), " X-GZip ", "application/json", 0, payload, nil},
		{"gzip with form content type", gz(t, payload), "gzip", "application/x-www-form-urlencoded", 0, payload, nil},
		{"gzip sniffed without header", gz(t, payload), "", "text/plain", 0, payload, nil},
		{"concatenated gzip members", append(gz(t, payload[:10]), gz(t, payload[10:])...), "gzip", "", 0, payload, nil},
		{"deflate (zlib)", zl(t, payload), "deflate", "", 0, payload, nil},
		{"deflate (raw)", rawDeflate(t, payload), "deflate", "", 0, payload, nil},
		{"exactly max", big, "", "", 1000, big, nil},
		{"plain over max", big, "", "", 999, nil, ErrTooLarge},
		{"gzip over max", gz(t, big), "gzip", "", 999, nil, ErrTooLarge},
		{"deflate over max", zl(t, big), "deflate", "", 999, nil, ErrTooLarge},
		{"unknown encoding", payload, "br", "", 0, nil, ErrUnsupportedEncoding},
		{"stacked encodings", payload, "gzip, br", "", 0, nil, ErrUnsupportedEncoding},
		{"corrupt gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3}, "gzip", "", 0, nil, ErrCorruptEncoding},
		{"gzip header on plain JSON", payload, "gzip", "", 0, nil, ErrCorruptEncoding},
		{"truncated gzip", gz(t, payload)[:20], "gzip", "", 0, nil, ErrCorruptEncoding},
		{"empty", nil, "", "", 0, []byte{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(tt.body))
			if tt.encoding != "" {
				r.Header.Set("Content-Encoding", tt.encoding)
			}
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			got, release, err := ReadBody(r, tt.max)
			if release == nil {
				t.Fatal("release is nil")
			}
			defer release()
			if !errors.Is(err, tt.sentinel) || (tt.sentinel == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			if tt.sentinel == nil && !bytes.Equal(got, tt.want) {
				t.Fatalf("body = %q, want %q", got, tt.want)
			}
		})
	}
}

// countingReader counts the bytes handed out by the decompressor.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestGzipBomb(t *testing.T) {
	bomb := gz(t, make([]byte, 10<<20)) // 10 MB of zeros, ~10 KB compressed
	const max = 64 << 10
	for _, enc := range []string{"gzip", ""} {
		r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(bomb))
		r.Header.Set("Content-Encoding", enc)
		_, release, err := ReadBody(r, max)
		release()
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("encoding %q: err = %v, want ErrTooLarge", enc, err)
		}
	}
	var out bytes.Buffer
	var counter *countingReader
	err := decompress(&out, bomb, encGzip, max, func(r io.Reader) io.Reader {
		counter = &countingReader{r: r}
		return counter
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if counter.n > max+1 || int64(out.Len()) > max+1 {
		t.Fatalf("inflated %d bytes (kept %d), limit %d", counter.n, out.Len(), max+1)
	}
}

func TestReadBodyContentLengthShortcut(t *testing.T) {
	r := httptest.NewRequest("POST", "/v1/track", strings.NewReader(strings.Repeat("a", 100)))
	r.ContentLength = 100
	r.Body = io.NopCloser(&failingReader{})
	if _, _, err := ReadBody(r, 50); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge before reading", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestBodyLimits(t *testing.T) {
	tests := []struct {
		l     BodyLimits
		batch bool
		want  int64
	}{
		{BodyLimits{}, true, MaxBatchBytes},
		{BodyLimits{}, false, MaxEventBytes},
		{BodyLimits{MaxBody: 7}, true, 7},
		{BodyLimits{MaxBody: 7}, false, 7},
	}
	for _, tt := range tests {
		if got := tt.l.For(tt.batch); got != tt.want {
			t.Errorf("%+v.For(%v) = %d, want %d", tt.l, tt.batch, got, tt.want)
		}
	}
}

func TestReadBodyMaxBytesReader(t *testing.T) {
	r := httptest.NewRequest("POST", "/v1/batch", strings.NewReader(strings.Repeat("a", 100)))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
	if _, _, err := ReadBody(r, 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}
