package receiver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Vector is one verification case of testdata/vectors.json.
type Vector struct {
	Name      string   `json:"name"`
	Origin    string   `json:"origin"`
	Secrets   []string `json:"secrets"`
	ID        string   `json:"id"`
	Timestamp string   `json:"timestamp"`
	Body      string   `json:"body"`
	Signature string   `json:"signature"`
	Now       int64    `json:"now"`
	Valid     bool     `json:"valid"`
	Error     string   `json:"error"`
}

func loadVectors(t *testing.T) []Vector {
	t.Helper()
	b, err := os.ReadFile("../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []Vector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 10 {
		t.Fatalf("only %d vectors", len(doc.Vectors))
	}
	return doc.Vectors
}

// errorCode is the vectors' name of a verification error.
func errorCode(err error) string {
	for code, e := range map[string]error{
		"missing_headers": ErrMissingHeaders, "bad_timestamp": ErrTimestamp,
		"too_old": ErrTooOld, "too_new": ErrTooNew, "no_match": ErrNoMatch,
	} {
		if errors.Is(err, e) {
			return code
		}
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			ver, err := NewVerifier(v.Secrets...)
			if err != nil {
				t.Fatal(err)
			}
			ver.Now = func() time.Time { return time.Unix(v.Now, 0) }
			err = ver.Verify(v.ID, v.Timestamp, v.Signature, []byte(v.Body))
			if (err == nil) != v.Valid || errorCode(err) != v.Error {
				t.Fatalf("Verify = %v, want valid=%v error=%q (%s)", err, v.Valid, v.Error, v.Origin)
			}
		})
	}
}

func TestNewVerifierRejectsBadSecrets(t *testing.T) {
	for _, s := range [][]string{nil, {""}, {"whsec_"}, {"whsec_not base64!"}} {
		if _, err := NewVerifier(s...); !errors.Is(err, ErrSecret) {
			t.Errorf("NewVerifier(%q) = %v", s, err)
		}
	}
}

// TestHandler: a verified message is handled once (a retry with the same
// webhook-id is acknowledged, not handled again), a bad signature is 401,
// missing headers 400, and a failed handling 500 then accepted on retry.
func TestHandler(t *testing.T) {
	v := loadVectors(t)[0] // spec vector A
	ver, _ := NewVerifier(v.Secrets...)
	body := `{"type":"contact.upserted","timestamp":"2026-03-01T12:00:00Z","data":{"subject":"p1"}}`
	var handled []string
	fail := true
	h := &Handler{Verifier: ver, OnMessage: func(id string, m Message) error {
		if m.Type == "segment.entered" && fail {
			fail = false
			return errors.New("database down")
		}
		handled = append(handled, id+" "+m.Type)
		return nil
	}}
	send := func(id, body string, sig func(id, ts, body string) string) int {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if id != "" {
			req.Header.Set(HeaderID, id)
		}
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sig(id, ts, body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	good := func(id, ts, body string) string { return signForTest(t, v.Secrets[0], id, ts, body) }
	bad := func(string, string, string) string { return "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=" }
	segment := `{"type":"segment.entered","timestamp":"2026-03-01T12:00:00Z","data":{"segment":"x"}}`
	steps := []struct {
		id, body string
		sig      func(id, ts, body string) string
		want     int
	}{
		{"msg_1", body, good, http.StatusNoContent},
		{"msg_1", body, good, http.StatusOK},
		{"msg_2", body, bad, http.StatusUnauthorized},
		{"", body, good, http.StatusBadRequest},
		{"msg_3", `not json`, good, http.StatusBadRequest},
		{"msg_4", segment, good, http.StatusInternalServerError},
		{"msg_4", segment, good, http.StatusNoContent},
	}
	for i, s := range steps {
		if got := send(s.id, s.body, s.sig); got != s.want {
			t.Fatalf("step %d: status %d, want %d", i, got, s.want)
		}
	}
	if want := []string{"msg_1 contact.upserted", "msg_4 segment.entered"}; strings.Join(handled, ",") != strings.Join(want, ",") {
		t.Fatalf("handled %v, want %v", handled, want)
	}
}

func TestDedupBounded(t *testing.T) {
	d := &Dedup{TTL: time.Minute, Max: 3}
	now := time.Now()
	for _, id := range []string{"a", "b", "c", "d"} {
		if d.Seen(id, now) {
			t.Fatalf("%s seen before", id)
		}
	}
	if d.Seen("a", now) {
		t.Error("the oldest id was kept beyond Max")
	}
	if !d.Seen("d", now) {
		t.Error("a recent id was forgotten")
	}
	if d.Seen("d", now.Add(2*time.Minute)) {
		t.Error("an expired id is still remembered")
	}
}

// signForTest signs like a Standard Webhooks sender.
func signForTest(t *testing.T, secret, id, ts, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
