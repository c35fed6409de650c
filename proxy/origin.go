package proxy

import (
	"net/url"
	"strings"
)

// originPattern matches an Origin header: "https://example.com",
// "http://localhost:*" (any port) or "https://*.example.com" (any
// subdomain, not the apex).
type originPattern struct {
	scheme, host, port string
	anyPort, anySub    bool
}

func parseOrigins(list []string) []originPattern {
	out := make([]originPattern, 0, len(list))
	for _, o := range list {
		scheme, rest, ok := strings.Cut(strings.ToLower(strings.TrimSpace(o)), "://")
		if !ok {
			continue
		}
		host, port := rest, ""
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
			host, port = rest[:i], rest[i+1:]
		}
		p := originPattern{scheme: scheme, host: host, port: port}
		if port == "*" {
			p.anyPort, p.port = true, ""
		}
		if strings.HasPrefix(host, "*.") {
			p.anySub, p.host = true, host[1:]
		}
		out = append(out, p)
	}
	return out
}

// originAllowed reports whether origin matches one of pats.
func originAllowed(pats []originPattern, origin string) bool {
	u, err := url.Parse(strings.ToLower(origin))
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	host, port := u.Hostname(), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	for _, p := range pats {
		if p.scheme != u.Scheme {
			continue
		}
		if !p.anyPort && p.port != port {
			continue
		}
		if p.anySub {
			if strings.HasSuffix(host, p.host) && len(host) > len(p.host) {
				return true
			}
			continue
		}
		if host == p.host {
			return true
		}
	}
	return false
}
