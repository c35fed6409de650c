package pseudonymize

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
)

// TestScrubTextClasses is the per-class table: every class in the
// encodings and notations sites and SDKs use, with the marker and count
// expected.
func TestScrubTextClasses(t *testing.T) {
	tests := []struct {
		class Class
		in    string
		want  string
	}{
		// e-mails in every encoding; decoded until stable
		{ClassEmail, "write to jane.doe@example.org", "write to [email]"},
		{ClassEmail, "jane.doe%40example.org", "[email]"},
		{ClassEmail, "jane.doe%2540example.org", "[email]"},
		{ClassEmail, "jane.doe%252540example.org", "[email]"},
		{ClassEmail, "jane.doe%25252540example.org", "[email]"},
		{ClassEmail, `jane.doe\u0040example.org`, "[email]"},
		{ClassEmail, `jane.doe\\u0040example.org and ugo (at) example (dot) org`, "[email] and [email]"},
		{ClassEmail, `jane.doe\\\\u0040example.org`, "[email]"},
		{ClassEmail, `jane.doe\u{40}example.org`, "[email]"},
		{ClassEmail, `jane.doe\x40example.org`, "[email]"},
		{ClassEmail, "jane.doe&#64;example.org", "[email]"},
		{ClassEmail, "jane.doe&#x40;example.org", "[email]"},
		{ClassEmail, "jane.doe&commat;example.org", "[email]"},
		{ClassEmail, "jane.doe&amp;#64;example.org", "[email]"},
		{ClassEmail, "jane%2Edoe%40example%2Eorg", "[email]"},
		{ClassEmail, "jane.doe＠example.org", "[email]"},
		{ClassEmail, "jane.doe (at) example (dot) org", "[email]"},
		{ClassEmail, "jane.doe[at]example[dot]org", "[email]"},
		{ClassEmail, "JANE.DOE@EXAMPLE.ORG", "[email]"},
		{ClassEmail, "Jane.Doe+Newsletter@Example.Org", "[email]"},
		{ClassEmail, "o'brien@example.ie", "[email]"},
		{ClassEmail, "jane..doe...x@example.org", "[email]"},
		{ClassEmail, "u!n#i$q*u^e`{|}~@example.org", "[email]"},
		{ClassEmail, "jane@[192.0.2.1]", "[email]"},
		{ClassEmail, "50% off for jane%40example.org", "50% off for [email]"},
		// phones in any common notation
		{ClassPhone, "+33 6 12 34 56 78", "[phone]"},
		{ClassPhone, "+33\u00a06\u00a012\u00a034\u00a056\u00a078", "[phone]"},
		{ClassPhone, "06\u202f12\u202f34\u202f56\u202f78", "[phone]"},
		{ClassPhone, "06\u200912\u200934\u200956\u200978", "[phone]"},
		{ClassPhone, "+33 (0)6 12 34 56 78", "[phone]"},
		{ClassPhone, "0033 6 12 34 56 78", "[phone]"},
		{ClassPhone, "06/12/34/56/78", "[phone]"},
		{ClassPhone, "030/1234567", "[phone]"},
		{ClassPhone, "0171-123 45 67", "[phone]"},
		{ClassPhone, "+49 (171) 123 45 67", "[phone]"},
		{ClassPhone, "+1 415 555 0100 ext. 23 ok", "[phone] ok"},
		{ClassPhone, "(415) 555-0100 x23", "[phone]"},
		{ClassPhone, "+442071838750;ext=12", "[phone]"},
		{ClassPhone, "tel. 01 42 68 53 00 poste 12", "tel. [phone]"},
		{ClassPhone, "+33%206%2012%2034%2056%2078", "[phone]"},
		// cards, Luhn-checked
		{ClassCard, "4111 1111 1111 1111", "[card]"},
		{ClassCard, "4111-1111-1111-1111", "[card]"},
		{ClassCard, "4111\u00a01111\u00a01111\u00a01111", "[card]"},
		{ClassCard, "card 5555555555554444.", "card [card]."},
		{ClassCard, "3782 822463 10005", "[card]"},
		// IBANs, mod-97-checked
		{ClassIBAN, "FR76 3000 6000 0112 3456 7890 189", "[iban]"},
		{ClassIBAN, "iban: FR7630006000011234567890189", "iban: [iban]"},
		{ClassIBAN, "de89 3704 0044 0532 0130 00", "[iban]"},
		{ClassIBAN, "GB82WEST12345698765432", "[iban]"},
		{ClassIBAN, "NO93\u00a08601\u00a01117\u00a0947", "[iban]"},
		// national ids
		{ClassNationalID, "NIR 1 85 05 78 006 084 91", "NIR [national_id]"},
		{ClassNationalID, "185057800608491", "[national_id]"},
		{ClassNationalID, "2 85 05 2A 006 084 82", "[national_id]"},
		{ClassNationalID, "285052A00608482", "[national_id]"},
		{ClassNationalID, "SSN 123-45-6789", "SSN [national_id]"},
		{ClassNationalID, "AB123456C", "[national_id]"},
		{ClassNationalID, "ni: AB 12 34 56 C", "ni: [national_id]"},
		{ClassNationalID, "DNI 12345678Z", "DNI [national_id]"},
		{ClassNationalID, "12345678-Z", "[national_id]"},
		{ClassNationalID, "NIE X1234567L", "NIE [national_id]"},
		{ClassNationalID, "CF RSSMRA85T10A562S", "CF [national_id]"},
		{ClassNationalID, "86095742719", "[national_id]"},
		{ClassNationalID, "85.07.30-033.28", "[national_id]"},
		{ClassNationalID, "44051401359", "[national_id]"},
		{ClassNationalID, "811228-9874", "[national_id]"},
		// IP literals anywhere
		{ClassIP, "from 198.51.100.73:443", "from [ip]:443"},
		{ClassIP, "from 2001:db8:abcd:12:3456:789a:bcde:f012.", "from [ip]."},
		{ClassIP, "[2001:db8::1]:8443", "[ip]:8443"},
		{ClassIP, "fe80::1%eth0 up", "[ip] up"},
		{ClassIP, "::ffff:192.0.2.1", "[ip]"},
		{ClassIP, "198%2E51%2E100%2E73", "[ip]"},
		// secrets
		{ClassSecret, "password=hunter2", "password=[secret]"},
		{ClassSecret, "Password: 'hunter2'", "Password: '[secret]'"},
		{ClassSecret, "mot_de_passe = Soleil42", "mot_de_passe = [secret]"},
		{ClassSecret, "db_password=x&user=a", "db_password=[secret]&user=a"},
		{ClassSecret, "x-api-key: 12345", "x-api-key: [secret]"},
		{ClassSecret, "access_token=ya29.a0AfH6SMB", "access_token=[secret]"},
		{ClassSecret, "Authorization: Bearer abc.def.ghi123", "Authorization: [secret]"},
		{ClassSecret, "Basic dXNlcjpwYXNz", "Basic [secret]"},
		{ClassSecret, "bearer 0123456789abcdef", "bearer [secret]"},
		{ClassSecret, "key AKIAIOSFODNN7EXAMPLE", "key [secret]"},
		{ClassSecret, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[secret]"},
		{ClassSecret, "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[secret]"},
		{ClassSecret, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "[secret]"},
		{ClassSecret, "pin: 1234", "pin: [secret]"},
		// tokens
		{ClassToken, "visitor a1b2c3d4e5f6a7b8", "visitor [token]"},
		{ClassToken, "sid 8f7d6a5c4b3e2f1a0b9c8d7e6f5a", "sid [token]"},
		// names, best effort, after a cue only
		{ClassName, "Dear Jane Doe,", "Dear [name],"},
		{ClassName, "Bonjour Marie Dupont !", "Bonjour [name] !"},
		{ClassName, "Mr. Smith", "Mr. [name]"},
		{ClassName, "M. Jean-Pierre Martin", "M. [name]"},
		{ClassName, "Mme O'Brien", "Mme [name]"},
		{ClassName, "Herr Müller", "Herr [name]"},
		{ClassName, "Ludwig: Sehr geehrter Herr Ludwig van Beethoven", "Ludwig: Sehr geehrter Herr [name]"},
		{ClassName, "Name: jane doe", "Name: [name]"},
		{ClassName, `nom : "Dupont"`, `nom : "[name]"`},
		{ClassName, "my name is Jane", "my name is [name]"},
		{ClassName, "je m'appelle Émilie", "je m'appelle [name]"},
		{ClassName, "Regards,\nJohn Smith", "Regards,\n[name]"},
		{ClassName, "Hola Ana García", "Hola [name]"},
	}
	for _, tt := range tests {
		var c Counts
		got := ScrubText(tt.in, &c)
		if got != tt.want {
			t.Errorf("%s: ScrubText(%q) = %q, want %q", tt.class, tt.in, got, tt.want)
			continue
		}
		if c.Of(tt.class) == 0 {
			t.Errorf("%s: ScrubText(%q) counted %v, want the class counted", tt.class, tt.in, c)
		}
		if again := ScrubText(got, nil); again != got {
			t.Errorf("not idempotent: %q → %q", got, again)
		}
	}
}

// neutralCorpus is text that holds no personal datum: product names,
// prices, dates, times, versions, order numbers with letters, CSS colors,
// slugs, sizes, event names. None of it may change.
var neutralCorpus = []string{
	"Blue running shoes – Spring collection 2026 | Acme Store",
	"Order placed on 2026-11-26 at 10:30 for 1,299.00 EUR (v1.2.3)",
	"Order ORD-2026-00042 confirmed", "Invoice INV/2026/1234", "Ticket #48213", "SKU-123-456-789", "ref A1B2C3",
	"Commande n° FR-2026-000123", "Bestellung 2026-11-26 / 14:05 Uhr", "Pedido 12345 enviado",
	"Price: 59.90 €", "€1 299,00", "$12,499.99", "1 299 €", "29,99 EUR TTC", "-15% today only", "50% off", "100%",
	"Total 1.234,56 €", "12 x 3,99 €",
	"2026-11-26", "26/11/2026", "11/26/2026", "26.11.2026", "2026-11-26T10:30:00Z", "2026-11-26 10:30:00", "26/11/2026 10:30",
	"Thu, 26 Nov 2026 10:30:00 GMT", "10:30", "10:30:45", "14h30", "Q4 2026", "FY2026", "week 48",
	"v1.2.3", "version 2.14.0-rc.1", "Chrome 131.0.6778.86", "Windows 10.0.19041.1", "iOS 17.1.2", "build 20261126.3",
	"node v22.11.0", "go1.26.8", "Python 3.12.7", "Safari/605.1.15", "AppleWebKit/537.36",
	"#ff00aa", "#FFF", "rgb(255, 0, 170)", "rgba(0,0,0,0.5)", "hsl(210 40% 50%)", "color: #1a2b3c;",
	"my-awesome-blog-post-2026-edition", "how-to-tie-running-shoes", "summer_sale_2026", "spring-2026-lookbook",
	"/products/blue-shoes", "/blog/2026/11/26/launch", "/category/men/shoes?page=2",
	"iPhone 15 Pro Max 256GB", "Galaxy S24 Ultra", "Pixel 9", "MacBook Pro 14\" M3", "RTX 4090", "USB-C 3.2 Gen 2",
	"Size 42", "EU 42 / US 9", "W32 L34", "500 ml", "1.5 kg", "24x36 cm", "1920x1080", "4K 3840x2160",
	"Signed Up", "Product Viewed", "Checkout Step 2", "Add to Cart", "Order Completed", "Page Viewed",
	"Hello World", "Hi there!", "Dear customer,", "Bonjour à tous", "Hello everyone", "Thanks again",
	"Product name: Blue Shoes", "Event name: Signed Up", "Plan name: Pro", "File name: report.pdf",
	"Welcome to Acme", "Terms & Conditions", "Tom &amp; Jerry", "R&D", "Q&A", "AT&T",
	"ISBN 978-3-16-148410-0", "EAN 4006381333931", "room 12345678", "1 2 3 4 5 6 7 8 9 10",
	"Rated 4.5 out of 5 (1,234 reviews)", "3 items in cart", "Step 1 of 3", "Page 2 of 10",
	"Free shipping over 50 €", "Delivery in 2-3 days", "Open 9:00-18:00", "Mon-Fri 09:00–17:00",
	"std::string", "a::b", "::1", "C++17", "UTF-8", "x86_64", "arm64-v8a", "SHA-256", "TLS 1.3", "HTTP/2",
	"token count: 5 tokens", "Password reset", "Forgot your password?", "API keys", "Secret Santa",
	"nom du produit", "Mr. Robot season 2", "Dr. Martens 1460",
}

// knownFalsePositives are neutral texts the scanner changes: the price of
// best effort, documented here so that any new one is a decision.
var knownFalsePositives = map[string]string{
	"EAN 4006381333931":  "EAN [number]", // every run of 9 digits or more is a [number]
	"Mr. Robot season 2": "Mr. [name] season 2",
	"Dr. Martens 1460":   "Dr. [name] 1460",
}

func TestNeutralCorpusUnchanged(t *testing.T) {
	changed := 0
	for _, s := range neutralCorpus {
		var c Counts
		got := ScrubText(s, &c)
		if want, known := knownFalsePositives[s]; known {
			if got != want {
				t.Errorf("known false positive %q → %q, want %q", s, got, want)
			}
			changed++
			continue
		}
		if got != s || c.Total() != 0 {
			t.Errorf("false positive: ScrubText(%q) = %q (%v)", s, got, c)
			changed++
		}
	}
	t.Logf("false positives: %d of %d neutral texts", changed, len(neutralCorpus))
}

// TestScrubTextGenerated is the property test: generated items of every
// class, in every notation and encoding, embedded in neutral context, are
// always removed and counted, and scrubbing is idempotent.
func TestScrubTextGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	contexts := []string{"%s", "contact: %s.", "(%s)", "Order for %s | Shop", "« %s »", "x %s y", "%s\n", "\"%s\""}
	type sample struct {
		text, secret string // secret: what must not survive, as text
		digits       string // or as digits (numbers in any notation)
		classes      []Class
	}
	gens := map[string]func() sample{
		"email": func() sample {
			plain, enc := genEmail(r)
			local, _, _ := strings.Cut(plain, "@")
			return sample{text: enc, secret: local + "@", classes: []Class{ClassEmail}}
		},
		"phone": func() sample {
			p, d := genPhone(r)
			return sample{text: p, digits: d[len(d)-7:], classes: []Class{ClassPhone}}
		},
		"card": func() sample {
			d := genCard(r)
			seps := []string{"", " ", "-", "\u00a0"}
			return sample{text: groupDigits(d, 4, seps[r.IntN(len(seps))]), digits: d, classes: []Class{ClassCard}}
		},
		"iban": func() sample {
			v := genIBAN(r)
			if r.IntN(2) == 0 {
				v = groupDigits(v, 4, " ")
			}
			if r.IntN(4) == 0 {
				v = strings.ToLower(v)
			}
			return sample{text: v, digits: strings.Map(keepDigits, v)[2:], classes: []Class{ClassIBAN}}
		},
		"nir": func() sample {
			v := genNIR(r)
			if r.IntN(2) == 0 {
				v = v[:1] + " " + v[1:3] + " " + v[3:5] + " " + v[5:7] + " " + v[7:10] + " " + v[10:13] + " " + v[13:]
			}
			return sample{text: v, secret: v, digits: strings.Map(keepDigits, v[7:]), classes: []Class{ClassNationalID, ClassNumber}}
		},
		"dni-nie": func() sample { v := genDNI(r); return sample{text: v, secret: v, classes: []Class{ClassNationalID}} },
		"nino": func() sample {
			v := genNINO(r)
			if r.IntN(2) == 0 {
				v = v[:2] + " " + v[2:4] + " " + v[4:6] + " " + v[6:8] + " " + v[8:]
			}
			return sample{text: v, digits: strings.Map(keepDigits, v), classes: []Class{ClassNationalID}}
		},
		"codice-fiscale": func() sample { v := genCF(r); return sample{text: v, secret: v, classes: []Class{ClassNationalID}} },
		"steuer-id": func() sample {
			v := genByCheck(r, 11, isSteuerID)
			return sample{text: v, digits: v, classes: []Class{ClassNationalID}}
		},
		"belgian-nn": func() sample {
			v := genByCheck(r, 11, func(d string) bool { return d[2] <= '1' && isBelgianNN(d) })
			return sample{text: v[:2] + "." + v[2:4] + "." + v[4:6] + "-" + v[6:9] + "." + v[9:], digits: v, classes: []Class{ClassNationalID}}
		},
		"ssn": func() sample {
			v := fmt.Sprintf("%03d-%02d-%04d", 1+r.IntN(665), 1+r.IntN(99), 1+r.IntN(9999))
			return sample{text: v, digits: strings.Map(keepDigits, v), classes: []Class{ClassNationalID}}
		},
		"ip": func() sample {
			v := genIP(r)
			return sample{text: v, secret: strings.Trim(v, "[]"), classes: []Class{ClassIP}}
		},
		"secret": func() sample {
			v, s := genSecret(r)
			return sample{text: v, secret: s, classes: []Class{ClassSecret}}
		},
		"name": func() sample {
			v, name := genName(r)
			return sample{text: v, secret: strings.Fields(name)[0], classes: []Class{ClassName}}
		},
	}
	for class, gen := range gens {
		t.Run(class, func(t *testing.T) {
			for range 300 {
				sm := gen()
				in := fmt.Sprintf(contexts[r.IntN(len(contexts))], sm.text)
				var c Counts
				out := ScrubText(in, &c)
				if sm.secret != "" && strings.Contains(strings.ToLower(out), strings.ToLower(sm.secret)) {
					t.Fatalf("%q → %q keeps %q", in, out, sm.secret)
				}
				if sm.digits != "" && strings.Contains(strings.Map(keepDigits, out), sm.digits) {
					t.Fatalf("%q → %q keeps the digits %s", in, out, sm.digits)
				}
				counted := false
				for _, cl := range sm.classes {
					counted = counted || c.Of(cl) > 0
				}
				if !counted {
					t.Fatalf("%q → %q counted %v, want one of %v", in, out, c, sm.classes)
				}
				if again := ScrubText(out, nil); again != out {
					t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
				}
			}
		})
	}
}

// hasPII reports whether ScrubText would change s.
func hasPII(s string) bool {
	var c Counts
	_, changed := scrubOnce(s, &c)
	return changed
}

func keepDigits(r rune) rune {
	if unicode.IsDigit(r) && r < 0x80 {
		return r
	}
	return -1
}

// TestScrubTextMixedIdempotent checks idempotence and "no detectable item
// left" on random mixtures of every class and neutral text.
func TestScrubTextMixedIdempotent(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pieces := func() string {
		switch r.IntN(8) {
		case 0:
			_, e := genEmail(r)
			return e
		case 1:
			p, _ := genPhone(r)
			return p
		case 2:
			return groupDigits(genCard(r), 4, " ")
		case 3:
			return genIBAN(r)
		case 4:
			return genIP(r)
		case 5:
			s, _ := genSecret(r)
			return s
		case 6:
			s, _ := genName(r)
			return s
		default:
			return neutralCorpus[r.IntN(len(neutralCorpus))]
		}
	}
	seps := []string{" ", ", ", "; ", "\n", " – ", "/", "&", "="}
	for range 2000 {
		var b strings.Builder
		for k := range 1 + r.IntN(5) {
			if k > 0 {
				b.WriteString(seps[r.IntN(len(seps))])
			}
			b.WriteString(pieces())
		}
		in := b.String()
		out := ScrubText(in, nil)
		if again := ScrubText(out, nil); again != out {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
		if hasPII(out) {
			t.Fatalf("detectable item left: %q → %q", in, out)
		}
	}
}

func TestCounts(t *testing.T) {
	var c Counts
	ScrubText("jane@x.org, +33 6 12 34 56 78, 4111 1111 1111 1111, jane2@x.org, password=x", &c)
	if c.Of(ClassEmail) != 2 || c.Of(ClassPhone) != 1 || c.Of(ClassCard) != 1 || c.Of(ClassSecret) != 1 || c.Total() != 5 {
		t.Errorf("counts = %v", c)
	}
	var none *Counts
	_ = ScrubText("jane@x.org", none) // nil counts are fine
	if ClassNationalID.String() != "national_id" || Class(200).String() != "unknown" {
		t.Errorf("class names: %s %s", ClassNationalID, Class(200))
	}
	for cl := range NumClasses {
		if markers[cl] != "" && !isMarkerAt(markers[cl], 0) {
			t.Errorf("marker %q of %s not recognized", markers[cl], cl)
		}
	}
}

// TestScrubTextConcurrent runs the phone-number paths (lazy metadata and
// regex caches) from many goroutines; run under -race.
func TestScrubTextConcurrent(t *testing.T) {
	texts := []string{"0171-123 45 67", "0033 6 12 34 56 78", "(415) 555-0100 x12", "+44 (0)20 7946 0958", "+33 6 12 34 56 78"}
	done := make(chan string)
	for g := range 8 {
		go func() {
			var out string
			for k := range 50 {
				out = ScrubText(texts[(g+k)%len(texts)], nil)
			}
			done <- out
		}()
	}
	for range 8 {
		if out := <-done; out != "[phone]" {
			t.Errorf("ScrubText = %q", out)
		}
	}
}
