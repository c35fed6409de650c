package proxy

import (
	"net/http"
	"strings"

	demosite "github.com/vigie-dev/vigie/examples/site"
)

// demoHandler serves the demo site (examples/site) under prefix.
func demoHandler(prefix string) http.Handler {
	files := http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.FileServerFS(demosite.FS()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
