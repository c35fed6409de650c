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
		// A PII-looking name that holds an e-mail never reaches names (which
		// is stored in clear as vaulted_traits).
		{"pii name holding an e-mail", `{"email_jane@doe.org":"x","email":"y"}`, `{}`, `{"email":"y"}`, []string{"email"}},
		{"credentials never vaulted", `{"password":"hunter2","api_token":"t","email":"y","plan":"pro"}`, `{"plan":"pro"}`, `{"email":"y"}`, []string{"email"}},
		{"tracker ids dropped", `{"_ga":"GA1.2.3.4","pk_vid":"a1b2","ajs_anonymous_id":"x","plan":"pro"}`, `{"plan":"pro"}`, "", nil},
		{"other languages vaulted", `{"prénom":"Jane","Nachname":"Doe","telefono":"1","adresse":"2 rue X","plan":"pro"}`, `{"plan":"pro"}`,
			`{"prénom":"Jane","Nachname":"Doe","telefono":"1","adresse":"2 rue X"}`, []string{"prénom", "Nachname", "telefono", "adresse"}},
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

// TestScrubPropertiesClasses: every class in property values of every JSON
// type (strings at any depth, arrays, numbers) and in property names.
func TestScrubPropertiesClasses(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		name, in, want string
		class          Class
	}{
		{"encoded e-mail in a nested string", `{"a":{"b":["x jane%2540example.org y"]}}`, `{"a":{"b":["x [email] y"]}}`, ClassEmail},
		{"escaped e-mail (JSON \\u0040 kept as text)", `{"a":"jane\\u0040example.org"}`, `{"a":"[email]"}`, ClassEmail},
		{"HTML-entity e-mail", `{"a":"jane&#64;example.org"}`, `{"a":"[email]"}`, ClassEmail},
		{"phone with NBSP", `{"a":"+33\u00a06\u00a012\u00a034\u00a056\u00a078"}`, `{"a":"[phone]"}`, ClassPhone},
		{"card as a JSON number", `{"n":4111111111111111}`, `{"n":"[card]"}`, ClassCard},
		{"card as a number with exponent", `{"n":4.111111111111111e15}`, `{"n":"[card]"}`, ClassCard},
		{"phone as a JSON number (E.164 without +)", `{"n":33612345678}`, `{"n":"[phone]"}`, ClassPhone},
		{"phone as a number with a zero fraction", `{"n":[14155550100.0]}`, `{"n":["[phone]"]}`, ClassPhone},
		{"NIR as a JSON number", `{"n":185057800608491}`, `{"n":"[national_id]"}`, ClassNationalID},
		{"German tax id as a JSON number", `{"n":86095742719}`, `{"n":"[national_id]"}`, ClassNationalID},
		{"Belgian number as a JSON number", `{"n":85073003328}`, `{"n":"[national_id]"}`, ClassNationalID},
		{"IBAN string", `{"n":"FR76 3000 6000 0112 3456 7890 189"}`, `{"n":"[iban]"}`, ClassIBAN},
		{"IPv6 string", `{"n":"2001:db8:abcd:12:3456:789a:bcde:f012"}`, `{"n":"[ip]"}`, ClassIP},
		{"URL with an IP host", `{"u":"http://198.51.100.73/x"}`, `{"u":"http://ip.invalid/x"}`, ClassIP},
		{"secret in free text", `{"note":"pwd: s3cr3t"}`, `{"note":"pwd: [secret]"}`, ClassSecret},
		{"credential-named member", `{"csrf_token":"abc","plan":"pro"}`, `{"plan":"pro"}`, ClassSecret},
		{"tracker-named member", `{"_pk_id.1.abcd":"a1b2c3d4e5f6a7b8.1700000000.","_fbp":"fb.1.2.3","plan":"pro"}`, `{"plan":"pro"}`, ClassTrackerID},
		{"name after a cue", `{"note":"Dear Jane Doe"}`, `{"note":"Dear [name]"}`, ClassName},
		{"PII names in other languages", `{"prenom":"J","nom":"D","Straße":"S","telefono":"1","nombre":"A","vorname":"V","customer":"C","full_name":"F","plan":"pro"}`, `{"plan":"pro"}`, ClassPersonalKey},
		{"member named with an encoded e-mail", `{"jane%40example.org":1,"k":2}`, `{"k":2}`, ClassEmail},
		{"member named with a phone", `{"+33 6 12 34 56 78":1,"k":2}`, `{"k":2}`, ClassPhone},
		// kept
		{"timestamps, amounts, ids and floats stay numbers", `{"ts":1732600000000,"s":1732600000,"price":59.9,"cents":129900,"id":123456789,"r":-33612345678,"f":0.4111111111111111}`,
			`{"ts":1732600000000,"s":1732600000,"price":59.9,"cents":129900,"id":123456789,"r":-33612345678,"f":0.4111111111111111}`, NumClasses},
		{"booleans and null", `{"a":true,"b":false,"c":null}`, `{"a":true,"b":false,"c":null}`, NumClasses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Counts
			got, err := p.ScrubProperties(nil, []byte(tt.in), &c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if tt.class != NumClasses && c.Of(tt.class) == 0 {
				t.Fatalf("counted %v, want %s", c, tt.class)
			}
			if tt.class == NumClasses && c.Total() != 0 {
				t.Fatalf("counted %v, want nothing", c)
			}
			again, err := p.ScrubProperties(nil, got, nil)
			if err != nil || string(again) != string(got) {
				t.Fatalf("not idempotent: %s → %s (%v)", got, again, err)
			}
		})
	}
}

func TestIntegerDigits(t *testing.T) {
	for in, want := range map[string]string{
		"4111111111111111": "4111111111111111", "3.3612345678e10": "33612345678", "33612345678.0": "33612345678",
		"1E3": "1000", "0.5": "", "1.5e0": "", "12e-1": "", "0": "", "1e400": "", "100e-2": "", "-1": "",
	} {
		var buf [24]byte
		got, ok := integerDigits(buf[:0], []byte(in))
		if string(got) != want || ok != (want != "") {
			t.Errorf("integerDigits(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func FuzzNumberClass(f *testing.F) {
	for _, s := range []string{"4111111111111111", "3.3612345678e10", "33612345678.0", "1e400", "-1", "0.0e-0", "185057800608491", "12345678901234567890123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		if !jsontext.Value(lit).IsValid() || len(lit) == 0 || (lit[0] != '-' && !isDigit(lit[0])) {
			return
		}
		var c Counts
		cl := numberClass([]byte(lit), &c)
		var buf [24]byte
		d, ok := integerDigits(buf[:0], []byte(lit))
		if ok && (len(d) == 0 || d[0] == '0' || !allDigits(string(d))) {
			t.Fatalf("integerDigits(%q) = %q", lit, d)
		}
		if cl != NumClasses && !ok {
			t.Fatalf("numberClass(%q) = %s for a non-integer", lit, cl)
		}
	})
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
