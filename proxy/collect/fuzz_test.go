package collect

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

var fuzzSeeds = []string{
	`{"type":"track","userId":"u","event":"E","properties":{"a":1}}`,
	`{"type":"identify","userId":12,"traits":{"email":"x"},"context":{"traits":{"b":2}}}`,
	`{"type":"alias","userId":"u","previousId":"p","timestamp":"2026-11-26T10:00:00.123Z","sentAt":"2026-11-26T10:00:01Z"}`,
	`{"type":"page","anonymousId":"a","context":{"ip":"1.2.3.4","page":{"url":"u"},"campaign":{"name":"c"},"library":{"name":"l"},"consent":{}}}`,
	`{"type":"group","userId":"u","groupId":1.5e3,"originalTimestamp":"2026-11-26"}`,
	`{"batch":[{"type":"track","userId":"u","event":"E"},1,{"type":"page"}],"writeKey":"w","context":{"ip":"x"}}`,
	`{"batch":[],"sentAt":"bad"}`,
	`{"\u0074ype":"screen","userId":"\u00e9"}`,
	`[]`, `null`, `{`, ``, `{"userId":{}}`,
	`{"type":"track","userId":"u","event":"E","properties":{"a":[1e400,-1e400,1e-400,12345678901234567890123456789012345]}}`,
	`{"type":"identify","userId":"u","traits":{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}`,
	`{"type":"page","userId":"u","integrations":{"x":"\"[{1e999"},"context":{"device":{"n":-0.5E+2}}}`,
}

// checkConsumable fails unless raw (a kept properties, traits or consent
// value) is JSON that encoding/json and jsontext's strict parser accept,
// with finite float64 numbers of at most MaxNumberLength characters and
// nesting at most MaxDepth levels.
func checkConsumable(t *testing.T, what string, raw []byte) {
	t.Helper()
	if raw == nil {
		return
	}
	if !jsontext.Value(raw).IsValid() {
		t.Fatalf("%s: strict parser refuses %q", what, raw)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil { // float64: refuses non-finite numbers
		t.Fatalf("%s: encoding/json refuses %q: %v", what, raw, err)
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		if dec.StackDepth() > MaxDepth {
			t.Fatalf("%s: nests deeper than %d: %q", what, MaxDepth, raw)
		}
		if tok.Kind() == '0' && len(tok.String()) > MaxNumberLength {
			t.Fatalf("%s: number of %d characters kept", what, len(tok.String()))
		}
	}
}

func checkKept(t *testing.T, m *Message) {
	t.Helper()
	checkConsumable(t, "properties", m.Properties)
	checkConsumable(t, "traits", m.Traits)
	checkConsumable(t, "context.consent", m.Context.Consent)
}

func checkDescription(t *testing.T, err error) {
	t.Helper()
	if d := Describe(err); d == "" || strings.Contains(d, "collect:") || strings.Contains(d, "%!") {
		t.Fatalf("description %q of %v", d, err)
	}
}

func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrMalformedJSON, ErrInvalidEvent, ErrTooLarge, ErrTooManyEvents} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error not sentinel-wrapped: %v", err)
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "track")
	}
	f.Fuzz(func(t *testing.T, body []byte, route string) {
		m, err := DecodeMessage(body, route)
		if err != nil {
			checkSentinel(t, err)
			checkDescription(t, err)
			return
		}
		checkKept(t, &m)
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded message fails Validate: %v", err)
		}
		// Decoding is deterministic.
		m2, err := DecodeMessage(body, route)
		if err != nil || m2.UserID != m.UserID || m2.Type != m.Type || string(m2.Properties) != string(m.Properties) {
			t.Fatalf("second decode differs: %v", err)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeBatch(body, 50, 1024)
		if err != nil {
			checkSentinel(t, err)
			checkDescription(t, err)
			return
		}
		if len(b.Messages)+len(b.Errors) > 50 {
			t.Fatalf("%d events exceed the cap", len(b.Messages)+len(b.Errors))
		}
		for i := range b.Messages {
			if err := b.Messages[i].Validate(); err != nil {
				t.Fatalf("kept message %d fails Validate: %v", i, err)
			}
			checkKept(t, &b.Messages[i])
		}
		last := -1
		for _, e := range b.Errors {
			checkSentinel(t, e.Err)
			checkDescription(t, e.Err)
			if e.Index <= last {
				t.Fatalf("item errors out of order: %v", b.Errors)
			}
			last = e.Index
		}
	})
}
