package delivery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testSecretValue = "pat-na1-0b4e7a52-ffff-4242-9c1d-secretvalue"

// TestSecretNeverPrints: no formatting, logging or marshalling path shows
// the value, including fmt's printing of a struct's unexported field.
func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret(testSecretValue)
	type config struct {
		Name   string
		Token  Secret
		hidden Secret
		ptr    *Secret
	}
	c := config{Name: "hubspot", Token: s, hidden: s, ptr: &s}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs = append(outputs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c))
	}
	outputs = append(outputs, fmt.Sprint(s, c), fmt.Sprintln(c), s.String(), s.GoString())
	if b, err := json.Marshal(c); err != nil {
		t.Fatal(err)
	} else {
		outputs = append(outputs, string(b))
	}
	if b, err := s.MarshalText(); err == nil {
		outputs = append(outputs, string(b))
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		l := slog.New(h)
		l.Info("configured", "token", s, "config", c, slog.Any("any", s))
		l.Info("group", slog.Group("g", "token", s))
	}
	outputs = append(outputs, logs.String())
	for _, out := range outputs {
		if strings.Contains(out, "secretvalue") || strings.Contains(out, "0b4e7a52") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Reveal() != testSecretValue {
		t.Fatal("Reveal does not return the value")
	}
	if !(Secret{}).IsZero() || s.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestSecretSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testSecretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIGIE_TEST_TOKEN", testSecretValue)
	t.Setenv("VIGIE_TEST_BLANK", " ")
	tests := []struct {
		name string
		src  SecretSource
		ok   bool
	}{
		{"env", SecretSource{Env: "VIGIE_TEST_TOKEN"}, true},
		{"file trimmed", SecretSource{File: file}, true},
		{"env missing", SecretSource{Env: "VIGIE_TEST_MISSING"}, false},
		{"env blank", SecretSource{Env: "VIGIE_TEST_BLANK"}, false},
		{"file missing", SecretSource{File: filepath.Join(dir, "nope")}, false},
		{"file empty", SecretSource{File: empty}, false},
		{"both", SecretSource{Env: "VIGIE_TEST_TOKEN", File: file}, false},
		{"none", SecretSource{}, false},
	}
	for _, tt := range tests {
		s, err := tt.src.Load()
		if tt.ok {
			if err != nil || s.Reveal() != testSecretValue {
				t.Errorf("%s: %v, %q", tt.name, err, s.Reveal())
			}
			continue
		}
		if !errors.Is(err, ErrSecret) {
			t.Errorf("%s: err = %v, want ErrSecret", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "secretvalue") {
			t.Errorf("%s: error shows the value: %v", tt.name, err)
		}
	}
}

func TestRedact(t *testing.T) {
	r := NewRedactor(NewSecret("xkeysib-abc123"), NewSecret("s3cr3t-key-42"), NewSecret("ab"))
	tests := []struct {
		in, want string
	}{
		{"Key not found: s3cr3t-key-42", "Key not found: [redacted]"},
		{"api-key xkeysib-abc123 invalid", "api-key [redacted] invalid"},
		{"other xkeysib-9f9f9f-00 key", "other [redacted] key"},
		{"Authorization: Bearer eyJhbGciOi.x.y, next", "Authorization: [secret], next"},
		{"token pat-eu1-aaaa-bbbb rejected", "token [secret] rejected"},
		{"secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret [secret]"},
		{"Email address jane.doe+news@example.co.uk is invalid", "Email address [email] is invalid"},
		{"/v3/contacts/jane%40example.com not found", "/v3/contacts/[email] not found"},
		{"line1\nline2\ttab", "line1 line2 tab"},
		{"ab stays: too short to be a secret", "ab stays: too short to be a secret"},
		// What a CRM's error body echoes, in other encodings and classes.
		{`{"message":"Email jane\\u0040example.org invalid"}`, `{"message":"Email [email] invalid"}`},
		{`"jane\\\\u0040example.org"`, `"[email]"`},
		{"JANE%2540EXAMPLE.ORG and jane&#64;example.org", "[email] and [email]"},
		{"call +33 6 12 34 56 78 now", "call [phone] now"},
		{"from 198.51.100.73 with card 4111 1111 1111 1111", "from [ip] with card [card]"},
	}
	for _, tt := range tests {
		if got := r.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("é", 400) + " jane@example.com"
	ex := r.Excerpt([]byte(long))
	if len(ex) > MaxExcerpt || !strings.HasSuffix(ex, "…") || !strings.HasPrefix(ex, "é") {
		t.Errorf("Excerpt of a long body = %d bytes %q", len(ex), ex[len(ex)-8:])
	}
	if ex := (*Redactor)(nil).Excerpt([]byte(`{"message":"jane@example.com   exists"}`)); ex != `{"message":"[email] exists"}` {
		t.Errorf("nil Redactor Excerpt = %q", ex)
	}
}

// TestFailedResultRedactsTheChange: a CRM's error body echoing the
// change's own values (its e-mail in any case or encoding, its mapped
// properties) is not kept in the Result's Reason.
func TestFailedResultRedactsTheChange(t *testing.T) {
	c := Change{Kind: KindUpsert, Site: "demo", Subject: "s1", EventID: "e1", Email: "Ada.Lovelace@example.org",
		Properties: map[string]any{"firstname": "Ada", "lastname": "Lovelacecanary", "plan": "no", "score": 5}}
	body := `{"message":"contact ADA.LOVELACE%40EXAMPLE.ORG (Ada Lovelacecanary) exists, plan no"}`
	r := FailedResult(c, &HTTPError{Op: "crm upsert", Status: 400, Excerpt: body})
	for _, leak := range []string{"lovelace", "LOVELACE", "Ada "} {
		if strings.Contains(r.Reason, leak) {
			t.Errorf("Reason %q keeps %q", r.Reason, leak)
		}
	}
	if !strings.Contains(r.Reason, "HTTP 400") || !strings.Contains(r.Reason, "plan no") {
		t.Errorf("Reason %q lost what is not the change's", r.Reason)
	}
}
