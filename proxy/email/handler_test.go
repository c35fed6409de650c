package email

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeRecorder struct {
	mu   sync.Mutex
	hits []Hit
	err  error
}

func (f *fakeRecorder) RecordEmail(_ context.Context, h Hit) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits = append(f.hits, h)
	return f.err
}

type fakeConsent map[string]bool

func (f fakeConsent) EmailConsent(_ context.Context, site, recipient string) (bool, error) {
	if recipient == "p_err" {
		return true, errors.New("ledger down")
	}
	return f[site+"/"+recipient], nil
}

type env struct {
	h    *Handler
	mux  *http.ServeMux
	rec  *fakeRecorder
	s    *Signer
	logs *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, testSigner(t, "k1", "k1"))
}

// newEnvWith is newEnv with the handler verifying with s.
func newEnvWith(t *testing.T, s *Signer) *env {
	t.Helper()
	e := &env{rec: &fakeRecorder{}, s: s, logs: &bytes.Buffer{}}
	h, err := New(Config{
		Signer:   e.s,
		Recorder: e.rec,
		Consent:  fakeConsent{"shop/p_yes": true, "shop/p_alice": true, "other/p_alice": true},
		Now:      func() time.Time { return t0.Add(time.Hour) },
		Logger:   slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.mux = http.NewServeMux()
	e.mux.HandleFunc("GET /e/o/{token}", h.ServeOpen)
	e.mux.HandleFunc("GET /e/c/{token}", h.ServeClick)
	return e
}

func (e *env) do(path, ua string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://track.example.com"+path, nil)
	r.RemoteAddr = "82.64.17.203:51234"
	if ua != "" {
		r.Header.Set("User-Agent", ua)
		r.Header.Set("Accept", acceptNav)
	}
	w := httptest.NewRecorder()
	e.mux.ServeHTTP(w, r)
	return w
}

func (e *env) sign(t *testing.T, tok Token) string {
	t.Helper()
	if tok.Site == "" {
		tok.Site, tok.Campaign = "shop", "spring"
	}
	s, err := e.s.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recipient signs a recipient value with the env's signer.
func (e *env) recipient(t *testing.T, site, pseudonym string, expires time.Time) string {
	t.Helper()
	v, err := e.s.SignRecipient(site, pseudonym, expires)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestServeOpen(t *testing.T) {
	tests := []struct {
		name      string
		tok       Token
		raw       string // used instead of tok when set
		query     string
		rFor      string // sign a recipient value for this pseudonym as r
		recErr    error
		wantHits  int
		recipient string
		granted   bool
		class     string
	}{
		{name: "consented recipient", tok: Token{Recipient: "p_yes"}, wantHits: 1, recipient: "p_yes", granted: true, class: ClassHuman},
		{name: "no consent: anonymous open", tok: Token{Recipient: "p_no"}, wantHits: 1, recipient: "", class: ClassHuman},
		{name: "consent lookup error: anonymous", tok: Token{Recipient: "p_err"}, wantHits: 1, recipient: ""},
		{name: "merge tag, signed recipient value, consented", tok: Token{}, rFor: "p_alice", wantHits: 1, recipient: "p_alice", granted: true},
		{name: "merge tag, clear user id: campaign level", tok: Token{}, query: "?r=alice-42", wantHits: 1, recipient: ""},
		{name: "merge tag not substituted", tok: Token{}, query: "?r=*|ID|*", wantHits: 1, recipient: ""},
		{name: "expired: GIF, nothing recorded", tok: Token{Recipient: "p_yes", Expires: t0}, wantHits: 0},
		{name: "bad token: GIF, nothing recorded", raw: "garbage.k1.xxxxxxxxxxxxxxxxxxxxxx", wantHits: 0},
		{name: "recorder fails: GIF anyway", tok: Token{Recipient: "p_yes"}, recErr: errors.New("disk full"), wantHits: 1, recipient: "p_yes", granted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.rec.err = tt.recErr
			tok := tt.raw
			if tok == "" {
				tok = e.sign(t, tt.tok)
			}
			if tt.rFor != "" {
				tt.query = "?r=" + e.recipient(t, "shop", tt.rFor, time.Time{})
			}
			w := e.do("/e/o/"+tok+tt.query, uaOutlookWin)
			if w.Code != 200 || w.Header().Get("Content-Type") != "image/gif" || !bytes.Equal(w.Body.Bytes(), transparentGIF) {
				t.Fatalf("answer %d %q %x", w.Code, w.Header().Get("Content-Type"), w.Body.Bytes())
			}
			if !strings.Contains(w.Header().Get("Cache-Control"), "no-store") {
				t.Fatalf("cacheable: %q", w.Header().Get("Cache-Control"))
			}
			if len(e.rec.hits) != tt.wantHits {
				t.Fatalf("hits %d, want %d", len(e.rec.hits), tt.wantHits)
			}
			if tt.wantHits == 1 {
				h := e.rec.hits[0]
				if h.Kind != KindOpen || h.Recipient != tt.recipient || h.Granted != tt.granted || h.Site != "shop" || h.Campaign != "spring" ||
					h.ClientIP != netip.MustParseAddr("82.64.17.203") || h.UserAgent != uaOutlookWin || (tt.class != "" && h.Class != tt.class) {
					t.Fatalf("hit %+v", h)
				}
			}
			for _, secret := range []string{"82.64.17", "p_yes", "alice", "p_err"} {
				if strings.Contains(e.logs.String(), secret) {
					t.Fatalf("log leaks %q: %s", secret, e.logs.String())
				}
			}
		})
	}
}

// A GIF decoder must accept the pixel.
func TestTransparentGIF(t *testing.T) {
	if len(transparentGIF) != 43 || string(transparentGIF[:6]) != "GIF89a" || transparentGIF[len(transparentGIF)-1] != 0x3b {
		t.Fatal("not a GIF89a")
	}
}

func TestServeClickOpenRedirects(t *testing.T) {
	e := newEnv(t)
	good := e.sign(t, Token{Link: "https://good.example/"})
	forged, _ := NewSigner([]Key{{ID: "k1", Secret: []byte("attacker-chosen-secret-32-bytes!")}}, "k1")
	forgedTok, _ := forged.Sign(Token{Site: "shop", Campaign: "spring", Link: "https://evil.example/"})
	other, _ := NewSigner([]Key{{ID: "k2", Secret: []byte("other-deployment-secret-32-bytes")}}, "k2")
	otherTok, _ := other.Sign(Token{Site: "shop", Campaign: "spring", Link: "https://evil.example/"})
	g := strings.Split(good, ".")
	ev := strings.Split(e.sign(t, Token{Link: "https://evil.example/"}), ".")
	tests := []struct{ name, path string }{
		{"tampered link in payload", "/e/c/" + ev[0] + "." + g[1] + "." + g[2]},
		{"token from an unknown key", "/e/c/" + otherTok},
		{"forged with same key id", "/e/c/" + forgedTok},
		{"truncated sig", "/e/c/" + good[:len(good)-3]},
		{"no sig", "/e/c/" + g[0] + "." + g[1]},
		{"scheme-relative", "/e/c///evil.com"},
		{"javascript", "/e/c/javascript:alert(document.domain)"},
		{"data", "/e/c/data:text%2Fhtml,%3Cscript%3Ealert(1)%3C%2Fscript%3E"},
		{"backslashes", "/e/c/%5C%5Cevil.com"},
		{"https no slashes", "/e/c/https:evil.com"},
		{"whitespace and control", "/e/c/%20%09https:%2F%2Fevil.com%00"},
		{"encoded newline header injection", "/e/c/x%0d%0aLocation:%20https:%2F%2Fevil.com"},
		{"url as token", "/e/c/https:%2F%2Fevil.com"},
		{"open token has no link", "/e/c/" + e.sign(t, Token{Recipient: "p_yes"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.path, uaChromeMac)
			// ServeMux itself may answer a path-cleaning redirect to a
			// same-origin path (//evil.com → /e/c/evil.com); follow it.
			if loc := w.Header().Get("Location"); (w.Code == http.StatusMovedPermanently || w.Code == http.StatusTemporaryRedirect) && strings.HasPrefix(loc, "/e/c/") {
				w = e.do(loc, uaChromeMac)
			}
			if w.Code != http.StatusBadRequest && w.Code != http.StatusNotFound {
				t.Fatalf("status %d, location %q", w.Code, w.Header().Get("Location"))
			}
			if w.Header().Get("Location") != "" || w.Header().Get("Refresh") != "" {
				t.Fatalf("redirected: %q", w.Header().Get("Location"))
			}
			body := strings.ToLower(w.Body.String())
			if strings.Contains(body, "evil") || strings.Contains(body, "<script") {
				t.Fatalf("body echoes input: %s", body)
			}
			if w.Code == http.StatusBadRequest && (!strings.Contains(body, "invalid") || w.Header().Get("Content-Security-Policy") == "") {
				t.Fatalf("invalid page: %s", body)
			}
			if len(e.rec.hits) != 0 {
				t.Fatalf("recorded %+v", e.rec.hits)
			}
		})
	}
}

func TestServeClick(t *testing.T) {
	tests := []struct {
		name      string
		tok       Token
		query     string
		ua        string
		status    int
		location  string
		hits      int
		recipient string
		class     string
		reason    string
	}{
		{name: "consented click", tok: Token{Recipient: "p_yes", Link: "https://shop.example/a?b=1"}, ua: uaChromeMac, status: 302, location: "https://shop.example/a?b=1", hits: 1, recipient: "p_yes", class: ClassHuman},
		{name: "unconsented click: redirect, anonymous", tok: Token{Recipient: "p_no", Link: "https://shop.example/a"}, ua: uaChromeMac, status: 302, location: "https://shop.example/a", hits: 1, recipient: ""},
		{name: "merge tag click, clear user id: campaign level", tok: Token{Link: "https://shop.example/a"}, query: "?r=alice-42", ua: uaChromeMac, status: 302, location: "https://shop.example/a", hits: 1, recipient: ""},
		{name: "expired: redirect, nothing recorded", tok: Token{Recipient: "p_yes", Link: "https://shop.example/old", Expires: t0}, ua: uaChromeMac, status: 302, location: "https://shop.example/old", hits: 0},
		{name: "honeypot: page, scanner", tok: Token{Recipient: "p_yes", Honeypot: true}, ua: uaChromeMac, status: 200, hits: 1, recipient: "p_yes", class: ClassScanner, reason: "honeypot_link"},
		{name: "scanner click within seconds", tok: Token{Recipient: "p_yes", Link: "https://shop.example/a", SentAt: t0.Add(time.Hour - 2*time.Second)}, ua: uaChromeMac, status: 302, location: "https://shop.example/a", hits: 1, recipient: "p_yes", class: ClassScanner, reason: "click_within_seconds_of_send"},
		{name: "curl", tok: Token{Link: "https://shop.example/a"}, ua: uaCurl, status: 302, location: "https://shop.example/a", hits: 1, class: ClassScanner, reason: "tool_user_agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.do("/e/c/"+e.sign(t, tt.tok)+tt.query, tt.ua)
			if w.Code != tt.status || w.Header().Get("Location") != tt.location {
				t.Fatalf("answer %d %q", w.Code, w.Header().Get("Location"))
			}
			if len(e.rec.hits) != tt.hits {
				t.Fatalf("hits %d, want %d", len(e.rec.hits), tt.hits)
			}
			if tt.hits == 1 {
				h := e.rec.hits[0]
				if h.Kind != KindClick || h.Recipient != tt.recipient || h.Link != tt.tok.Link || (tt.class != "" && h.Class != tt.class) || (tt.reason != "" && h.Reason != tt.reason) {
					t.Fatalf("hit %+v", h)
				}
			}
		})
	}
}

func TestServeClickRecorderErrorStillRedirects(t *testing.T) {
	e := newEnv(t)
	e.rec.err = errors.New("storage unavailable")
	w := e.do("/e/c/"+e.sign(t, Token{Recipient: "p_yes", Link: "https://shop.example/"}), uaChromeMac)
	if w.Code != 302 || w.Header().Get("Location") != "https://shop.example/" {
		t.Fatalf("answer %d", w.Code)
	}
	if !strings.Contains(e.logs.String(), "recording hit failed") || strings.Contains(e.logs.String(), "p_yes") || strings.Contains(e.logs.String(), "82.64") {
		t.Fatalf("logs: %s", e.logs.String())
	}
}

func TestNewRequiresSigner(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("err %v", err)
	}
}

// The whole flow: rewrite, then follow the wrapped link and fetch the pixel.
func TestRewriteThenServe(t *testing.T) {
	e := newEnv(t)
	res, err := Rewrite([]byte(`<body><a href="https://shop.example/x">x</a></body>`), RewriteOptions{Base: "http://track.example.com/", Signer: e.s, Site: "shop", Campaign: "spring", Recipient: "p_yes"})
	if err != nil {
		t.Fatal(err)
	}
	hrefs := links(t, res.HTML)
	w := e.do(strings.TrimPrefix(hrefs[0], "http://track.example.com"), uaChromeMac)
	if w.Code != 302 || w.Header().Get("Location") != "https://shop.example/x" {
		t.Fatalf("click %d %q", w.Code, w.Header().Get("Location"))
	}
	i := bytes.Index(res.HTML, []byte(`/e/o/`))
	j := bytes.IndexByte(res.HTML[i:], '"')
	if w := e.do(string(res.HTML[i:i+j]), uaOutlookWin); w.Code != 200 {
		t.Fatalf("open %d", w.Code)
	}
	if len(e.rec.hits) != 2 || e.rec.hits[1].Kind != KindOpen {
		t.Fatalf("hits %+v", e.rec.hits)
	}
}

// A merge-tag hit names a recipient only through a recipient value Vigie
// signed for that site, still valid, under a key it still holds; any other
// r counts at campaign level, and the pixel and the redirect still work.
func TestMergeTagRecipient(t *testing.T) {
	k1 := testSigner(t, "k1", "k1")
	rotated := testSigner(t, "k2", "k2", "k1")
	retired := testSigner(t, "k2", "k2")
	foreign, _ := NewSigner([]Key{{ID: "k1", Secret: []byte("another deployment's secret 32b.")}}, "k1")
	val := func(s *Signer, site, p string, exp time.Time) string {
		v, err := s.SignRecipient(site, p, exp)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := val(k1, "shop", "p_alice", time.Time{})
	parts := strings.Split(good, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	campaignTok, _ := k1.Sign(Token{Site: "shop", Campaign: "spring", Recipient: "p_alice"})
	tests := []struct {
		name       string
		handler    *Signer // verifies (default k1)
		r          string
		attributed bool
	}{
		{name: "valid", r: good, attributed: true},
		{name: "valid, expires later", r: val(k1, "shop", "p_alice", t0.Add(2*time.Hour)), attributed: true},
		{name: "signed by the previous key after rotation", handler: rotated, r: good, attributed: true},
		{name: "signed by the new key after rotation", handler: rotated, r: val(rotated, "shop", "p_alice", time.Time{}), attributed: true},
		{name: "expired", r: val(k1, "shop", "p_alice", t0.Add(time.Hour-time.Second))},
		{name: "retired key", handler: retired, r: good},
		{name: "other site", r: val(k1, "other", "p_alice", time.Time{})},
		{name: "tampered payload", r: flip(parts[0], 3) + "." + parts[1] + "." + parts[2]},
		{name: "tampered signature", r: parts[0] + "." + parts[1] + "." + flip(parts[2], 5)},
		{name: "signature's unused bits changed", r: parts[0] + "." + parts[1] + "." + flip(parts[2], len(parts[2])-1)},
		{name: "truncated", r: good[:len(good)-1]},
		{name: "key id swapped", handler: rotated, r: parts[0] + ".k2." + parts[2]},
		{name: "another deployment's key", r: val(foreign, "shop", "p_alice", time.Time{})},
		{name: "pseudonym in clear", r: "p_alice"},
		{name: "clear user id", r: "alice-42"},
		{name: "e-mail address", r: "alice@example.org"},
		{name: "campaign token as r", r: campaignTok},
		{name: "unsubstituted merge tag", r: "*|VIGIE|*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.handler == nil {
				tt.handler = k1
			}
			e := newEnvWith(t, tt.handler)
			q := "?r=" + url.QueryEscape(tt.r)
			if w := e.do("/e/o/"+e.sign(t, Token{})+q, uaOutlookWin); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), transparentGIF) {
				t.Fatalf("open answered %d", w.Code)
			}
			if w := e.do("/e/c/"+e.sign(t, Token{Link: "https://shop.example/a"})+q, uaChromeMac); w.Code != 302 || w.Header().Get("Location") != "https://shop.example/a" {
				t.Fatalf("click answered %d %q", w.Code, w.Header().Get("Location"))
			}
			if len(e.rec.hits) != 2 {
				t.Fatalf("%d hits, want 2", len(e.rec.hits))
			}
			for _, h := range e.rec.hits {
				want := ""
				if tt.attributed {
					want = "p_alice"
				}
				if h.Recipient != want || h.Granted != tt.attributed || h.Site != "shop" || h.Campaign != "spring" {
					t.Fatalf("%s hit: recipient %q granted %v, want %q", h.Kind, h.Recipient, h.Granted, want)
				}
			}
			if strings.Contains(e.logs.String(), "alice") || (tt.r != "" && strings.Contains(e.logs.String(), tt.r)) {
				t.Fatalf("log names the recipient: %s", e.logs.String())
			}
		})
	}
}

// The recipient value from a per-recipient token wins over any r.
func TestSignedRecipientBeatsR(t *testing.T) {
	e := newEnv(t)
	other := e.recipient(t, "shop", "p_alice", time.Time{})
	e.do("/e/o/"+e.sign(t, Token{Recipient: "p_yes"})+"?r="+other, uaOutlookWin)
	if len(e.rec.hits) != 1 || e.rec.hits[0].Recipient != "p_yes" {
		t.Fatalf("hits %+v", e.rec.hits)
	}
}
