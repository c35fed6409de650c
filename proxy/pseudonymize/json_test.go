package pseudonymize

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

func TestScrubProperties(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		name, in, want string
	}{
		{"pii names dropped at any depth",
			`{"E-Mail":"x@y.com","plan":"pro","nested":{"phoneNumber":"1","ok":[{"first_name":"J","n":1}]}}`,
			`{"plan":"pro","nested":{"ok":[{"n":1}]}}`},
		{"string values scrubbed",
			`{"title":"Hi jane@doe.org","n":[1,"call 0612345678",true,null,2.5e3]}`,
			`{"title":"Hi [email]","n":[1,"call [phone]",true,null,2.5e3]}`},
		{"url strings scrubbed without marketing",
			`{"url":"https://a.com/u/x@y.io?email=z@z.com&utm_source=nl&gclid=1#f","path":"/reset/8f7d6a5c4b3e2f1a0b9c8d7e6f5a"}`,
			`{"url":"https://a.com/u/[email]?utm_source=nl","path":"/reset/[token]"}`},
		{"member named with personal data dropped", `{"jane@doe.org":1,"k":2}`, `{"k":2}`},
		{"escapes normalized", `{"a":"\u00e9\n","b":"x"}`, `{"a":"é\n","b":"x"}`},
		{"empty object", `{}`, `{}`},
		{"whitespace normalized", " {\"a\" : [ 1 , 2 ] }\n", `{"a":[1,2]}`},
		{"numbers kept as numbers", `{"ts":1732600000000}`, `{"ts":1732600000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.ScrubProperties(nil, []byte(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			again, err := p.ScrubProperties(nil, got, nil)
			if err != nil || string(again) != string(got) {
				t.Fatalf("not idempotent: %s → %s (%v)", got, again, err)
			}
		})
	}
	got, err := p.ScrubProperties([]byte("prefix:"), []byte(`{"a":1}`), nil)
	if err != nil || string(got) != `prefix:{"a":1}` {
		t.Errorf("append to dst = %q, %v", got, err)
	}
}

func TestScrubPropertiesErrors(t *testing.T) {
	p := newTestP(t)
	for _, in := range []string{``, `null`, "  null \n", " "} {
		if got, err := p.ScrubProperties(nil, []byte(in), nil); got != nil || err != nil {
			t.Errorf("ScrubProperties(%q) = %q, %v; want nil, nil", in, got, err)
		}
	}
	for _, in := range []string{`{`, `{"a":}`, `[1]`, `"s"`, `{"a":1} x`, `{"a":1}{}`, `{"a":1,"a":2}`, "{\"a\":\"\xff\"}", `nul`} {
		if _, err := p.ScrubProperties(nil, []byte(in), nil); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("ScrubProperties(%q) err = %v, want ErrInvalidJSON", in, err)
		}
	}
}

func TestSplitTraits(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		name            string
		in              string
		clean, personal string
		names           []string
	}{
		{"mixed",
			`{"email":"x@y.com","firstName":"Jane","plan":"pro","bio":"call +33 6 12 34 56 78","address":{"city":"Paris"},"company":{"name":"Acme","size":5}}`,
			`{"plan":"pro","bio":"call [phone]","company":{"size":5}}`,
			`{"email":"x@y.com","firstName":"Jane","address":{"city":"Paris"}}`,
			[]string{"email", "firstName", "address"}},
		{"nothing personal", `{"plan":"pro"}`, `{"plan":"pro"}`, "", nil},
		{"name with personal data dropped from both", `{"jane@doe.org":true,"email":"x@y.co"}`, `{}`, `{"email":"x@y.co"}`, []string{"email"}},
		{"all personal", `{"Phone":"+1 415 555 0100"}`, `{}`, `{"Phone":"+1 415 555 0100"}`, []string{"Phone"}},
		{"empty", ``, "", "", nil},
		{"null", `null`, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clean, personal, names, err := p.SplitTraits([]byte(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(clean) != tt.clean || string(personal) != tt.personal || !reflect.DeepEqual(names, tt.names) {
				t.Fatalf("got clean=%s personal=%s names=%q\nwant clean=%s personal=%s names=%q", clean, personal, names, tt.clean, tt.personal, tt.names)
			}
		})
	}
	for _, in := range []string{`[]`, `{"a":`, `{"email":1,"email":2}`} {
		if _, _, _, err := p.SplitTraits([]byte(in), nil); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("SplitTraits(%q, nil) err = %v, want ErrInvalidJSON", in, err)
		}
	}
}

func FuzzScrubProperties(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"email":"x@y.com","n":[1,{"phone":2}]}`, `{"u":"https://a.b/?utm_term=x@y.co"}`,
		`{"a":"\u0000\ud800"}`, `[1]`, `{"a":1,"a":2}`, `{"t":"0612345678","x":-0.0e-1}`, `null`, `{`} {
		f.Add([]byte(s), "note")
	}
	p := newTestP(f)
	const email = "jane.doe@example.com"
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		out, err := p.ScrubProperties(nil, raw, nil)
		if jsontext.Value(raw).IsValid() && strings.HasPrefix(strings.TrimSpace(string(raw)), "{") {
			if err != nil {
				t.Fatalf("valid object rejected: %s: %v", raw, err)
			}
			if !jsontext.Value(out).IsValid() {
				t.Fatalf("invalid output %s from %s", out, raw)
			}
			again, err := p.ScrubProperties(nil, out, nil)
			if err != nil || string(again) != string(out) {
				t.Fatalf("not idempotent: %s → %s → %s (%v)", raw, out, again, err)
			}
			if _, _, _, err := p.SplitTraits(raw, nil); err != nil {
				t.Fatalf("SplitTraits rejected valid object %s: %v", raw, err)
			}
		} else if err == nil && out != nil {
			t.Fatalf("invalid input %q accepted: %s", raw, out)
		}
		doc := []byte(`{"note":`)
		if q, err := jsontext.AppendQuote(doc, text+" "+email+" "+text); err == nil {
			doc = append(q, `,"list":[`...)
			doc, _ = jsontext.AppendQuote(doc, email)
			doc = append(doc, "]}"...)
			out, err := p.ScrubProperties(nil, doc, nil)
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			if strings.Contains(string(out), email) {
				t.Fatalf("seeded e-mail survived: %s", out)
			}
		}
	})
}
