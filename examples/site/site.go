// Package site is the demo site served by Vigie at /demo/: a few pages
// with a consent banner wired to vigie('consent', …), a single-page-app
// section and a newsletter form using identify, so that a newcomer sees
// events arrive in the admin API a minute after `go run ./proxy/cmd/vigie`.
package site

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS is the site's files (index.html at its root).
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return sub
}
