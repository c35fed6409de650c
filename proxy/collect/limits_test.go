package collect

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func nest(open, close string, n int, inner string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

// TestExtremeJSONRejected: numbers that common parsers refuse and absurd
// nesting get a 400 for that event, naming the field (issue 8, defect 9).
func TestExtremeJSONRejected(t *testing.T) {
	deepObj := nest(`{"a":`, `}`, MaxDepth+1, `1`) // 65 levels
	okObj := nest(`{"a":`, `}`, MaxDepth, `1`)     // 64 levels
	long := strings.Repeat("7", 5000)
	tests := []struct {
		name      string
		body      string
		wantField string // "" = accepted
	}{
		{"1e400 in properties", `{"properties":{"a":{"b":1e400}}}`, "properties.a.b"},
		{"-1e400 in traits", `{"traits":{"x":-1e400}}`, "traits.x"},
		{"1E+400 in an array", `{"properties":{"l":[1,2,1E+400]}}`, "properties.l[2]"},
		{"5000-digit integer", `{"properties":{"n":` + long + `}}`, "properties.n"},
		{"33-character number", `{"properties":{"n":123456789012345678901234567890123}}`, "properties.n"},
		{"nesting 1000 deep in properties", `{"properties":{"p":` + nest(`[`, `]`, 1000, ``) + `}}`, "properties.p" + strings.Repeat("[0]", MaxDepth-1)},
		{"nesting 65 deep in traits", `{"traits":` + deepObj + `}`, "traits" + strings.Repeat(".a", MaxDepth)},
		{"nesting in context.traits", `{"context":{"traits":{"t":` + nest(`[`, `]`, 100, ``) + `}}}`, "context.traits.t" + strings.Repeat("[0]", MaxDepth-1)},
		{"nesting in context.consent", `{"context":{"consent":` + deepObj + `}}`, "context.consent" + strings.Repeat(".a", MaxDepth)},
		{"1e400 in integrations", `{"integrations":{"x":1e400}}`, "integrations.x"},
		{"nesting in an unknown context member", `{"context":{"device":` + deepObj + `}}`, "context.device" + strings.Repeat(".a", MaxDepth)},
		{"top-level unknown number", `{"value":1e999}`, "value"},
		{"escaped names in the path", `{"properties":{"a\"b":{"c\\":1e400}}}`, `properties.a"b.c\`},
		{"strings that look like numbers and brackets", `{"properties":{"s":"1e400 [[[[ \\\" {{{","t":"` + long + `"}}`, ""},
		{"64 levels", `{"properties":` + okObj + `}`, ""},
		{"32-character number", `{"properties":{"n":12345678901234567890123456789012}}`, ""},
		{"underflow is zero, accepted", `{"properties":{"n":1e-400,"m":-2.5E-3}}`, ""},
		{"max float", `{"properties":{"n":1.7976931348623157e308}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"type":"track","event":"E","userId":"u",` + strings.TrimPrefix(tt.body, "{")
			m, err := DecodeMessage([]byte(body), "")
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !json.Valid(m.Properties) {
					t.Fatal("kept properties are not JSON")
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("err = %v, want a FieldError", err)
			}
			if fe.Field != tt.wantField {
				t.Fatalf("field = %q, want %q", fe.Field, tt.wantField)
			}
			if strings.Contains(Describe(err), "1e400") || strings.Contains(Describe(err), "7777") {
				t.Fatalf("description quotes the value: %s", Describe(err))
			}

			// In a batch only that event is refused, under its index.
			batch := `{"batch":[{"type":"track","event":"ok","userId":"u"},` + body + `]}`
			b, err := DecodeBatch([]byte(batch), 0, 1<<20)
			if err != nil {
				t.Fatalf("batch: %v", err)
			}
			if len(b.Messages) != 1 || len(b.Errors) != 1 || b.Errors[0].Index != 1 {
				t.Fatalf("batch: %d kept, errors %v", len(b.Messages), b.Errors)
			}
			if !errors.As(b.Errors[0].Err, &fe) || fe.Field != "batch[1]."+tt.wantField {
				t.Fatalf("batch field = %v", b.Errors[0].Err)
			}
		})
	}
}

// TestDescribeNamesNoInternals: the client text of every error names the
// problem in the API's terms, never the package, a Go type or input.
func TestDescribeNamesNoInternals(t *testing.T) {
	bodies := []string{`hello`, `{"type":"track"`, ``, `{"a":1} {}`, `{"a":1,"a":2}`, "{\"a\":\"\xff\"}",
		`{"userId":"` + strings.Repeat("a", MaxEventBytes) + `"}`, `[1]`}
	for _, b := range bodies {
		_, err := DecodeMessage([]byte(b), "track")
		if err == nil {
			t.Fatalf("%q accepted", b)
		}
		d := Describe(err)
		for _, bad := range []string{"collect", "jsontext", "*", "%!", "EOF", "\xff"} {
			if strings.Contains(d, bad) {
				t.Errorf("%.20q: description %q has %q", b, d, bad)
			}
		}
	}
	if d := Describe(errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout")); strings.Contains(d, "tcp") {
		t.Fatalf("foreign error passed on: %q", d)
	}
}
