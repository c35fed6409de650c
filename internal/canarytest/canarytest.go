// Package canarytest is the one home of the privacy canaries: known
// personal data of every class the scrubber covers, in every encoding and
// notation testers send, the payloads that carry them in every field, and
// the scanners that fail a test when one of them is found where personal
// data must never be (raw files, decoded values, logs, answers). It is
// imported by tests only.
package canarytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The fixed canaries: known personal data sent in every field Vigie reads.
const (
	Email  = "jane.canary@example.org"
	IP     = "198.51.100.73"
	IP6    = "2001:db8:abcd:12:3456:789a:bcde:f012"
	UA     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36 CanaryBuild/4242"
	Anon   = "anon-canary-7f3a9c"
	User   = "user-canary-55821"
	Group  = "group-canary-9911"
	Phone  = "+33 6 12 34 56 78"
	Phone2 = "0612345678"
	First  = "Janetha"
	Last   = "Canaryson"
	Token  = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
)

// Payloads are Segment-spec messages (track, page, identify, group, alias
// and an IPv6 track) with the fixed canaries in every field, consent
// granted.
func Payloads() []string {
	esc := url.QueryEscape(Email)
	pageURL := "https://shop.example/users/" + Email + "/orders?email=" + esc + "&phone=" + url.QueryEscape(Phone) + "&utm_source=mail&session=" + Token + "#" + Email
	ctx := `"context":{"ip":"` + IP + `","userAgent":"` + UA + `","locale":"fr-FR",
	  "page":{"url":"` + pageURL + `","path":"/users/` + Email + `/orders","referrer":"https://mail.example/inbox?to=` + esc + `","title":"Orders of ` + Email + `","search":"?email=` + esc + `"},
	  "campaign":{"name":"spring ` + Email + `","source":"news","content":"call ` + Phone + `"},
	  "consent":{"analytics":true,"personalization":true,"marketing":true},
	  "traits":{"email":"` + Email + `"}}`
	props := `"properties":{"email":"` + Email + `","phone":"` + Phone + `","name":"` + First + ` ` + Last + `",
	  "note":"write to ` + Email + ` or call ` + Phone + ` / ` + Phone2 + `","nested":{"contact_email":"` + Email + `","ok":"fine"},
	  "link":"https://shop.example/x?email=` + esc + `","api_key":"` + Token + `","plan":"pro"}`
	traits := `"traits":{"email":"` + Email + `","phone":"` + Phone + `","firstName":"` + First + `","lastName":"` + Last + `",
	  "address":{"street":"1 rue Canary","city":"Paris"},"plan":"pro","bio":"reach me at ` + Email + `"}`
	ids := `"anonymousId":"` + Anon + `","userId":"` + User + `"`
	return []string{
		`{"type":"track","event":"Ordered by ` + Email + `",` + ids + `,"messageId":"` + Email + `",` + ctx + `,` + props + `}`,
		`{"type":"page","name":"Orders",` + ids + `,` + ctx + `,` + props + `}`,
		`{"type":"identify",` + ids + `,` + ctx + `,` + traits + `}`,
		`{"type":"group","groupId":"` + Group + `",` + ids + `,` + ctx + `,` + traits + `}`,
		`{"type":"alias","previousId":"` + Anon + `","userId":"` + User + `",` + ctx + `}`,
		`{"type":"track","event":"v6",` + ids + `,"context":{"ip":"` + IP6 + `","consent":{"analytics":true,"personalization":true}}}`,
	}
}

// All are the strings that must never be found at rest, in a log, a
// plugin's input or an answer: the fixed canaries, the variants' and the
// numbers' finds.
func All() []string {
	out := []string{Email, url.QueryEscape(Email), IP, IP6, UA, "CanaryBuild",
		Anon, User, Group, Phone, Phone2, "612345678", First, Last,
		"1 rue Canary", Token}
	for _, v := range Variants {
		out = append(out, v.Find...)
	}
	return append(out, NumberFinds...)
}

// Variant is one personal datum in one encoding or notation.
type Variant struct {
	// Class is the scrubber's class (email, phone, card, iban,
	// national_id, ip, secret, name).
	Class string
	// Send is the text as a site or SDK sends it.
	Send string
	// Find are the (ASCII) strings that must never be found anywhere.
	Find []string
}

// Variants are personal data of every class the scrubber covers, in
// several encodings and notations each.
var Variants = []Variant{
	{"email", "rita.canary+news%2540example.org", []string{"rita.canary"}},
	{"email", "liam.canary%252540example.org", []string{"liam.canary"}},
	{"email", `noa.canary\u0040example.org`, []string{"noa.canary"}},
	{"email", "eva.canary&#64;example.org", []string{"eva.canary"}},
	{"email", `kai.canary\\u0040example.org`, []string{"kai.canary"}},
	{"email", "ugo.canary (at) example (dot) org", []string{"ugo.canary"}},
	{"email", "ZOE.CANARY@EXAMPLE.ORG", []string{"zoe.canary"}},
	{"email", "o'canary.ivy@example.org", []string{"canary.ivy"}},
	{"phone", "+49\u00a0171\u00a09876543", []string{"9876543"}},
	{"phone", "0044 20 7946 0958", []string{"7946 0958", "79460958"}},
	{"phone", "(415) 555-0137 x12", []string{"555-0137", "5550137"}},
	{"phone", "06\u202f98\u202f76\u202f54\u202f31", []string{"698765431"}},
	{"phone", "0171-234 56 78", []string{"234 56 78", "2345678"}},
	{"card", "4111 1111 1111 1111", []string{"1111 1111 1111", "4111111111111111"}},
	{"card", "3782-822463-10005", []string{"822463", "378282246310005"}},
	{"iban", "FR76 3000 6000 0112 3456 7890 189", []string{"0112 3456 7890", "30006000011234567890189"}},
	{"iban", "gb82west12345698765432", []string{"12345698765432"}},
	{"national_id", "NIR 1 85 05 78 006 084 91", []string{"006 084 91", "185057800608491"}},
	{"national_id", "SSN 078-05-1120", []string{"078-05-1120", "078051120"}},
	{"national_id", "NINO AB 12 34 56 C", []string{"AB 12 34 56 C", "AB123456C"}},
	{"national_id", "DNI 12345678Z", []string{"12345678Z"}},
	{"national_id", "CF RSSMRA85T10A562S", []string{"RSSMRA85T10A562S"}},
	{"national_id", "NN 85.07.30-033.28", []string{"85.07.30-033.28", "85073003328"}},
	{"ip", "2001:db8:cafe::17", []string{"2001:db8:cafe::17", "cafe::17"}},
	{"ip", "198.51.100.74", []string{"198.51.100.74"}},
	{"secret", "password=Hunter2Canary", []string{"Hunter2Canary"}},
	{"secret", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjF9.c2lnbmF0dXJlY2FuYXJ5", []string{"eyJjYW5hcnkiOjF9", "c2lnbmF0dXJlY2FuYXJ5"}},
	{"secret", "AKIACANARYKEY0000042", []string{"CANARYKEY"}},
	{"name", "Dear " + First + " " + Last, nil},
	{"name", "Mme Ysolde Canarique", []string{"Ysolde", "Canarique"}},
	{"name", "Name: Oswin Canarez", []string{"Oswin", "Canarez"}},
}

// Numbers are personal data sent as JSON numbers (a phone in E.164
// without its '+', a card, a NIR, a German tax id), found by
// NumberFinds.
const Numbers = `"n1":33698765431,"n2":5555555555554444,"n3":185057800608491,"n4":86095742719`

var NumberFinds = []string{"5555555555554444", "86095742719",
	// other trackers' ids and identifier-like referral values
	"9f8e7d6c5b4a3921", "1357924680", "cnry4u8x2", "9f8e7d6c5b4a3922", "1357924681", "cnryajs77",
	// values of personal-data keys in other languages
	"Canariel", "Canarovic", "Canaritz", "Canarita", "Canarine", "Canaryco", "Canarius",
	// hosts that are IP addresses in other forms
	"3325256714", "0xC6336449"}

// ConsentStates are the consent a payload carries: granted, absent and
// denied (the last two give anonymous events).
var ConsentStates = map[string]string{
	"granted": `,"consent":{"analytics":true,"personalization":true,"marketing":true}`,
	"absent":  ``,
	"denied":  `,"consent":{"analytics":false,"personalization":false,"marketing":false}`,
}

// VariantPayloads put every canary variant in every field Vigie reads, for
// each consent state, with ids of their own (so that the consent ledger
// entries of one state do not change another's decisions).
func VariantPayloads() []string {
	var texts []string
	for _, v := range Variants {
		texts = append(texts, v.Send)
	}
	all := strings.Join(texts, " ; ")
	q := url.QueryEscape(all)
	var segs []string
	for _, t := range texts {
		segs = append(segs, url.PathEscape(t))
	}
	path := "/p/" + strings.Join(segs, "/")
	// JSON-quoted all (its \u escapes are text, so the backslash is escaped).
	jq, _ := json.Marshal(all)
	j := string(jq)
	var keys []string
	for _, t := range texts {
		k, _ := json.Marshal(t)
		keys = append(keys, string(k)+":1")
	}
	var out []string
	for _, state := range []string{"granted", "absent", "denied"} {
		ids := `"anonymousId":"` + Anon + `-` + state + `","userId":"` + User + `-` + state + `"`
		pageURL := "https://shop.example" + path + "?utm_term=" + q + "&utm_content=" + q + "&utm_campaign=" + q +
			"&pk_vid=9f8e7d6c5b4a3921&_ga=GA1.2.1357924680.1700000000&ref=cnry4u8x2&email=" + q + "#" + url.PathEscape(all)
		pageJ, _ := json.Marshal(pageURL)
		refJ, _ := json.Marshal("http://198.51.100.74:8080" + path + "?q=" + q)
		pathJ, _ := json.Marshal(path)
		ctx := `"context":{"ip":"` + IP + `","userAgent":"` + UA + `","locale":` + j + `,"library":{"name":"canary-sdk","version":` + j + `},
		  "page":{"url":` + string(pageJ) + `,"path":` + string(pathJ) + `,"referrer":` + string(refJ) + `,"title":` + j + `,"search":"?utm_term=` + q + `"},
		  "campaign":{"name":` + j + `,"source":"cnry4u8x2","medium":` + j + `,"term":` + j + `,"content":` + j + `}` + ConsentStates[state] + `}`
		props := `"properties":{"note":` + j + `,"nested":{"deep":[` + j + `,{"k":` + j + `}]},` + strings.Join(keys, ",") + `,` + Numbers + `,
		  "link":"http://3325256714/x?utm_source=` + q + `","img":"http://0xC6336449/i.png",
		  "prenom":"Canariel","nom":"Canarovic","vorname":"Canaritz","nombre":"Canarita","adresse":"12 rue Canarine","customer":"Canaryco","full_name":"Canarius Maximus",
		  "_pk_id.1.ab12":"9f8e7d6c5b4a3922.1700000000.","_ga":"GA1.2.1357924681.1700000000","ajs_anonymous_id":"cnryajs77","plan":"pro"}`
		traits := `"traits":{"bio":` + j + `,"company":{"note":` + j + `},` + strings.Join(keys, ",") + `,` + Numbers + `,
		  "prenom":"Canariel","telefono":"+34 612 34 56 78","_ga":"GA1.2.1357924681.1700000000","password":"Hunter2Canary","plan":"pro"}`
		msgID := func(typ string) string { return `"messageId":"` + Email + `-` + state + `-` + typ + `"` }
		out = append(out,
			`{"type":"track","event":`+j+`,`+ids+`,`+msgID("track")+`,`+ctx+`,`+props+`}`,
			`{"type":"page","name":`+j+`,`+ids+`,`+msgID("page")+`,`+ctx+`,`+props+`}`,
			`{"type":"screen","name":`+j+`,`+ids+`,`+msgID("screen")+`,`+ctx+`,`+props+`}`,
			`{"type":"identify",`+ids+`,`+msgID("identify")+`,`+ctx+`,`+traits+`}`,
		)
	}
	return out
}

// Texts are the variants' Send texts, in order.
func Texts() []string {
	out := make([]string, 0, len(Variants))
	for _, v := range Variants {
		out = append(out, v.Send)
	}
	return out
}

// Find fails t for every canary of All found in b (in any letter case);
// where says what b is. It reports whether b was clean.
func Find(t testing.TB, where string, b []byte) bool {
	t.Helper()
	clean := true
	lower := bytes.ToLower(b)
	for _, c := range All() {
		if bytes.Contains(b, []byte(c)) || bytes.Contains(lower, []byte(strings.ToLower(c))) {
			t.Errorf("%s contains personal datum %q: …%q…", where, c, around(b, c))
			clean = false
		}
	}
	return clean
}

// around returns the bytes of b around the first match of c (ASCII
// letters in any case), so that a reader can tell a leak in clear from a
// chance match inside ciphertext (a short canary matched case-insensitively
// turns up in enough random base64). Nil when only a non-ASCII case fold
// matched.
func around(b []byte, c string) []byte {
	fold := func(p []byte) []byte {
		q := make([]byte, len(p))
		for i, x := range p {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			q[i] = x
		}
		return q
	}
	i := bytes.Index(fold(b), fold([]byte(c)))
	if i < 0 {
		return nil
	}
	return b[max(0, i-40):min(len(b), i+len(c)+40)]
}

// FindExtra is Find for more strings than All (a test's own canaries).
func FindExtra(t testing.TB, where string, b []byte, extra ...string) bool {
	t.Helper()
	clean := Find(t, where, b)
	lower := bytes.ToLower(b)
	for _, c := range extra {
		if bytes.Contains(lower, []byte(strings.ToLower(c))) {
			t.Errorf("%s contains personal datum %q: …%q…", where, c, around(b, c))
			clean = false
		}
	}
	return clean
}

// ScanDir runs FindExtra over every regular file under dir (raw bytes:
// Badger's tables and value log, JetStream's message blocks, uploads) and
// returns how many files it read.
func ScanDir(t testing.TB, dir string, extra ...string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		FindExtra(t, "file "+p, b, extra...)
		return nil
	})
	if err != nil {
		t.Fatalf("canarytest: scan %s: %v", dir, err)
	}
	return n
}

// ScanStreams runs the canary scanner over every message of every stream
// of js (the KV buckets' streams too), decoded as JetStream serves them.
func ScanStreams(t testing.TB, js jetstream.JetStream, where string, extra ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s stream %s: %v", where, name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("%s stream %s: %v", where, name, err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s stream %s seq %d: %v", where, name, seq, err)
			}
			n++
			hdr, _ := json.Marshal(m.Header)
			FindExtra(t, fmt.Sprintf("%s stream %s message %d (%s)", where, name, seq, m.Subject),
				append(append([]byte(m.Subject), hdr...), m.Data...), extra...)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatalf("%s streams: %v", where, err)
	}
	return n
}
