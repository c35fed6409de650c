package proxy

import (
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

// proxyWarnEvery is how often, at most, the warning about a given kind of
// untrusted proxy repeats.
const proxyWarnEvery = time.Hour

// peerKind classes a peer address for logs, which never hold the address
// itself.
type peerKind uint8

const (
	peerLoopback peerKind = iota
	peerPrivate
	peerPublic
	peerKinds
)

func kindOf(a netip.Addr) peerKind {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return peerLoopback
	case a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a):
		return peerPrivate
	}
	return peerPublic
}

// cgnat is the shared address space of RFC 6598, where cloud load
// balancers often live.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

var (
	peerNames = [peerKinds]string{"a loopback address", "a private network", "a public address"}
	peerFixes = [peerKinds]string{
		"add 127.0.0.1/32 and ::1/128 to trusted_proxies",
		"add the proxy's network (e.g. 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or fd00::/8) to trusted_proxies",
		"add the proxy's address range to trusted_proxies",
	}
)

// untrustedProxies warns when requests carry forwarding headers from a
// peer trusted_proxies does not list: behind a reverse proxy that is not
// trusted, every visitor gets the proxy's address (the same truncated IP,
// country and failure budget). One warning per kind of peer an hour; the
// zero value is ready.
type untrustedProxies struct {
	last [peerKinds]atomic.Int64 // unix seconds of the last warning
}

// forwarded reports whether r carries a header naming a client address
// through a proxy.
func forwarded(r *http.Request) bool {
	h := r.Header
	return len(h["X-Forwarded-For"]) > 0 || len(h["Forwarded"]) > 0 || len(h["X-Real-Ip"]) > 0
}

// checkUntrustedProxy warns (rate-limited) if r, from the untrusted peer
// peer, was forwarded.
func (s *Server) checkUntrustedProxy(r *http.Request, peer netip.Addr) {
	if !forwarded(r) {
		return
	}
	k := kindOf(peer)
	now := time.Now().Unix()
	last := &s.proxyWarn.last[k]
	prev := last.Load()
	if prev != 0 && now-prev < int64(proxyWarnEvery/time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	s.log.Warn("requests come through a proxy that trusted_proxies does not list, from "+peerNames[k]+
		": Vigie takes the proxy's address for every visitor's (IP prefix, country, failure budget); "+peerFixes[k]+
		" and restart, or remove the forwarding header if there is no proxy",
		"headers", "X-Forwarded-For, Forwarded or X-Real-IP")
}
