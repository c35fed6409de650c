package proxy

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// Kinds of authentication, the label of the auth metrics.
const (
	authWriteKey = "write_key"
	authAdmin    = "admin"
)

// authLimiter bounds failed authentications per client network: one token
// bucket (golang.org/x/time/rate) per /24 or /48, each failure taking a
// token, kept in an LRU (hashicorp/golang-lru/v2) of bounded size so that
// memory stays bounded whatever the number of networks. A network absent
// from the LRU has a full bucket; so has one that was evicted or forgotten.
type authLimiter struct {
	mu    sync.Mutex
	nets  *simplelru.LRU[netip.Prefix, *rate.Limiter]
	every rate.Limit
	burst int
}

func newAuthLimiter(c config.Auth) (*authLimiter, error) {
	nets, err := simplelru.NewLRU[netip.Prefix, *rate.Limiter](c.MaxNetworks, nil)
	if err != nil {
		return nil, err
	}
	return &authLimiter{nets: nets, every: rate.Every(time.Duration(c.FailureRefill)), burst: c.FailureBurst}, nil
}

// admit reports whether network n may try to authenticate at now; when it
// may not, retry is how long until it may. A network whose bucket is full
// again is forgotten.
func (l *authLimiter) admit(n netip.Prefix, now time.Time) (retry time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, found := l.nets.Peek(n)
	if !found {
		return 0, true
	}
	tokens := lim.TokensAt(now)
	switch {
	case tokens >= float64(l.burst):
		l.nets.Remove(n)
		return 0, true
	case tokens >= 1:
		return 0, true
	}
	return time.Duration((1 - tokens) / float64(l.every) * float64(time.Second)), false
}

// fail records a failed authentication of network n at now. Failures of
// concurrent attempts admitted together put the bucket in debt, which only
// makes the network wait longer.
func (l *authLimiter) fail(n netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, found := l.nets.Get(n)
	if !found {
		lim = rate.NewLimiter(l.every, l.burst)
		l.nets.Add(n, lim)
	}
	lim.ReserveN(now, 1)
}

// clientNet is the network of the request's client (see clientIP).
func (s *Server) clientNet(r *http.Request) netip.Prefix {
	a, _ := netip.ParseAddr(s.clientIP(r))
	return pseudonymize.Network(a)
}

// authAdmit lets an authentication attempt of the given kind proceed, or
// answers 429 with Retry-After when the client's network has used its
// failure budget. It runs before any key is checked: a throttled network
// learns nothing of the keys it tries, the right one included.
func (s *Server) authAdmit(w http.ResponseWriter, r *http.Request, kind string) bool {
	retry, ok := s.authLim.admit(s.clientNet(r), time.Now())
	if ok {
		return true
	}
	s.metrics.authThrottled.WithLabelValues(kind).Inc()
	secs := strconv.Itoa(max(1, int(math.Ceil(retry.Seconds()))))
	w.Header().Set("Retry-After", secs)
	writeError(w, http.StatusTooManyRequests, "too_many_auth_failures",
		"too many failed authentications from your network; retry in "+secs+" s", nil)
	return false
}

// authFailed records a failed authentication of the given kind: a
// credential was presented and is wrong.
func (s *Server) authFailed(r *http.Request, kind string) {
	s.metrics.authFailures.WithLabelValues(kind).Inc()
	s.authLim.fail(s.clientNet(r), time.Now())
}
