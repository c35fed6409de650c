package imports

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzMapping: any document either compiles or is a *MappingError naming
// a field, without panicking; the problem never quotes the document.
func FuzzMapping(f *testing.F) {
	for _, s := range []string{
		`{"event":"Order Completed","identity":{"column":"email","kind":"email"},"lawful_basis":{"basis":"contract"},"purposes":["marketing"]}`,
		`{"type":"identify","identity":{"column":"id","kind":"user_id"},"traits":{"a":"b","c":{"column":"d","type":"number"}},"lawful_basis":{"column":"c","date_column":"d","date_format":"unix"},"purposes":["personalization"],"retention":"30d"}`,
		`{"format":"csv","delimiter":";","decimal":",","event":"x","identity":{"column":"i","kind":"user_id"},"timestamp":{"column":"t","format":"02/01/2006","timezone":"Europe/Paris"},"lawful_basis":{"basis":"contract"},"purposes":["analytics"]}`,
		`{"properties":{"":1}}`, `[]`, `{"event":`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := compile(doc, Options{})
		if err == nil {
			if p.format == "" || p.typ == "" || len(p.columns) != len(p.colPaths) {
				t.Fatalf("compiled without format, type or column paths: %+v", p)
			}
			return
		}
		var me *MappingError
		if !errors.As(err, &me) || me.Field == "" || me.Problem == "" {
			t.Fatalf("not a mapping error naming a field: %#v", err)
		}
		if len(doc) >= 8 && strings.Contains(me.Problem, string(doc)) {
			t.Fatalf("the problem quotes the document: %q", me.Problem)
		}
	})
}

// fuzzPlan compiles a mapping that reads every kind of value.
func fuzzPlan(t testing.TB, format string) *plan {
	p, err := compile([]byte(`{"format":"`+format+`","event":"Order Completed","identity":{"column":"email","kind":"email"},
	 "natural_key":["id"],"timestamp":{"column":"at"},
	 "properties":{"id":"id","n":{"column":"n","type":"number"},"i":{"column":"i","type":"integer"},"b":{"column":"b","type":"boolean"},"ts":{"column":"ts","type":"timestamp"}},
	 "attributes":{"score":{"column":"n","type":"number"}},
	 "lawful_basis":{"column":"c","date_column":"d","source_column":"s"},"purposes":["marketing"]}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzRows: whatever a file holds, reading and building its rows never
// panics, values stay valid UTF-8 strings of the row, and a row that
// builds has an identity and a natural key.
func FuzzRows(f *testing.F) {
	f.Add("csv", []byte("id,email,at,n,i,b,ts,c,d,s\n1,a@b.c,2026-01-01,1.5,2,yes,2026-01-01T10:00:00Z,yes,2026-01-01,web\n\"x,y\",\"q\"\"r\"@b.c,,,,,,,,\n"))
	f.Add("csv", []byte("\xef\xbb\xbfid,email,at,n,i,b,ts,c,d,s\n1,a@b.c,,NaN,1e3,maybe,never,marketing;analytics,1767225600,\n\"unterminated\n"))
	f.Add("ndjson", []byte(`{"id":"1","email":"a@b.c","n":1.5,"i":2,"b":true,"c":"yes","d":"2026-01-01"}`+"\n"+`[1]`+"\n"+`{"id":{"x":1}}`+"\n{\n"))
	f.Fuzz(func(t *testing.T, format string, data []byte) {
		if format != FormatCSV && format != FormatNDJSON {
			return
		}
		p := fuzzPlan(t, format)
		var src rowSource
		var err error
		r := bytes.NewReader(data)
		if format == FormatCSV {
			src, err = newCSVSource(r, p, 0)
		} else {
			src, err = newNDJSONSource(r, p, 0)
		}
		if err != nil {
			return // no header, or a column missing from it
		}
		vals := make([]string, len(p.columns))
		var rw row
		now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		last := int64(-1)
		for range 10_000 {
			reason, _, err := src.next(vals)
			if errors.Is(err, io.EOF) || err != nil {
				return
			}
			if off := src.offset(); off < last || off > int64(len(data)) {
				t.Fatalf("offset %d after %d (file %d bytes)", off, last, len(data))
			}
			last = src.offset()
			if reason != "" {
				if reasonText[reason] == "" {
					t.Fatalf("reason %q has no text", reason)
				}
				continue
			}
			for _, v := range vals {
				if !utf8.ValidString(v) {
					t.Fatalf("invalid UTF-8 value %q", v)
				}
			}
			if e := p.build(&rw, vals, now, func(string) bool { return true }); e != nil {
				if reasonText[e.reason] == "" {
					t.Fatalf("reason %q has no text", e.reason)
				}
				continue
			}
			if rw.identity == "" || len(rw.key) != 32 || rw.at.IsZero() {
				t.Fatalf("built row without identity, key or time: %+v", rw)
			}
		}
	})
}
