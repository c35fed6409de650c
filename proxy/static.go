package proxy

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	demosite "github.com/vigie-dev/vigie/examples/site"
	"github.com/vigie-dev/vigie/sdk/js"
)

// demoHandler serves the demo site (examples/site) under prefix.
func demoHandler(prefix string) http.Handler {
	files := http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.FileServerFS(demosite.FS()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// snippetHandler serves the browser snippet (sdk/js), gzipped when the
// client accepts it, cacheable for an hour and revalidated by ETag.
func snippetHandler() http.Handler {
	sum := sha256.Sum256(js.Script)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(js.Script)
	_ = zw.Close()
	zipped := gz.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("ETag", etag)
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := js.Script
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			body = zipped
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}
