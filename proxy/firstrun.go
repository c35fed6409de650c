package proxy

import (
	"net"
	"net/http"
)

// ConsolePath is where the console is served.
const ConsolePath = "/console/"

// firstRunRoutes serves what a newcomer opens first: / leads to the demo
// site (to the console page when the demo is off), and ConsolePath says
// what exists so far.
func (s *Server) firstRunRoutes(mux *http.ServeMux) {
	home := ConsolePath
	if s.cfg.DemoPath != "off" {
		home = s.cfg.DemoPath
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, home, http.StatusFound)
	})
	mux.HandleFunc("GET "+ConsolePath+"{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(s.consolePlaceholder())
	})
}

// consolePlaceholder is the console page until the console exists.
func (s *Server) consolePlaceholder() []byte {
	demo := ""
	if s.cfg.DemoPath != "off" {
		demo = `<li><a href="` + s.cfg.DemoPath + `">The demo site</a>: click around, every hit is sent to this Vigie.</li>`
	}
	return []byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Vigie</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}code{background:#8882;padding:0 .2em}</style></head>
<body><h1>Vigie is running</h1><p>The console is not built yet. Meanwhile:</p><ul>` + demo + `
<li>Stored events: <code>curl -H "Authorization: Bearer $TOKEN" ` + "'/admin/v1/events?limit=10'" + `</code> with the admin token printed at first start (see README.md, "Send an event").</li>
<li><a href="/metrics">Metrics</a> (Prometheus), <a href="/readyz">readiness</a>.</li></ul></body></html>
`)
}

// URL is the address at which this machine reaches the server, followed by
// path ("" before Start): an unspecified listen address (0.0.0.0, ::) is
// shown as the loopback one.
func (s *Server) URL(path string) string {
	if s.ln == nil {
		return ""
	}
	host, port, err := net.SplitHostPort(s.ln.Addr().String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + path
}
