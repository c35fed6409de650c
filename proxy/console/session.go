package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// CookieName is the console session cookie: HttpOnly, SameSite=Strict,
// Secure over HTTPS, Path=/.
const CookieName = "vigie_session"

// CSRFHeader carries the session's CSRF token on the console's scripted
// state-changing requests; forms send it as the field CSRFField.
const (
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf"
)

// Session defaults (Config).
const (
	DefaultSessionIdle = 12 * time.Hour
	DefaultSessionMax  = 7 * 24 * time.Hour
	DefaultMaxSessions = 1000
)

// session is one signed-in browser. The store keys it by the SHA-256 of
// the cookie's value: the value itself is kept nowhere.
type session struct {
	tokenID  string
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// Sessions is the server-side session store, in memory: a restart signs
// everyone out, and nothing about sessions is ever written to disk. A
// session expires after idle time without a request and absolutely after
// max; at most maxCount live at once (the least recently used goes first).
type Sessions struct {
	idle, max time.Duration
	now       func() time.Time

	mu    sync.Mutex
	cache *lru.Cache[[sha256.Size]byte, *session]
}

func newSessions(idle, max time.Duration, maxCount int, now func() time.Time) *Sessions {
	c, _ := lru.New[[sha256.Size]byte, *session](maxCount)
	return &Sessions{idle: idle, max: max, now: now, cache: c}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create opens a session for token id and returns the cookie value.
func (s *Sessions) create(tokenID string) (string, *session) {
	v := randomToken()
	now := s.now()
	ss := &session{tokenID: tokenID, csrf: randomToken(), created: now, lastSeen: now}
	s.mu.Lock()
	s.cache.Add(sha256.Sum256([]byte(v)), ss)
	s.mu.Unlock()
	return v, ss
}

// lookup returns the live session of cookie value v and slides its idle
// expiry; an expired one is removed.
func (s *Sessions) lookup(v string) (*session, bool) {
	if v == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(v))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.cache.Get(k)
	if !ok {
		return nil, false
	}
	if now.Sub(ss.lastSeen) > s.idle || now.Sub(ss.created) > s.max {
		s.cache.Remove(k)
		return nil, false
	}
	ss.lastSeen = now
	return ss, true
}

// remove ends the session of cookie value v.
func (s *Sessions) remove(v string) {
	s.mu.Lock()
	s.cache.Remove(sha256.Sum256([]byte(v)))
	s.mu.Unlock()
}

// removeToken ends every session opened with token id (revoked).
func (s *Sessions) removeToken(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.cache.Keys() {
		if ss, ok := s.cache.Peek(k); ok && ss.tokenID == id {
			s.cache.Remove(k)
		}
	}
}

// len is the number of sessions held (expired ones included until looked
// up or evicted).
func (s *Sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache.Len()
}

// csrfOK reports, in constant time, whether r carries the session's CSRF
// token (header CSRFHeader, else form field CSRFField).
func (ss *session) csrfOK(r *http.Request) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostFormValue(CSRFField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// SameOrigin checks what browsers say of a state-changing request's
// origin: an Origin header must name the host the request was sent to, and
// Sec-Fetch-Site, when sent, must be same-origin (or none: typed by the
// user). A request from another site, or a sandboxed frame (Origin: null),
// is refused.
func SameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && u.Host == r.Host
}

// safeMethod reports whether m changes nothing (no CSRF check needed).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
