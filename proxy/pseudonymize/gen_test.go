package pseudonymize

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Generators of valid personal data of every class, in the notations and
// encodings sites and SDKs send, for the property tests. Checksums are
// computed here, independently of ids.go except where noted.

func digitsN(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

// luhnComplete appends the Luhn check digit to d.
func luhnComplete(d string) string {
	for k := 0; k < 10; k++ {
		if c := d + string(rune('0'+k)); luhnRef(c) {
			return c
		}
	}
	panic("unreachable")
}

// luhnRef is a straightforward Luhn, written apart from ids.go's.
func luhnRef(d string) bool {
	sum := 0
	for i := 0; i < len(d); i++ {
		v := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

func mod97(s string) int {
	rem := 0
	for _, c := range s {
		rem = (rem*10 + int(c-'0')) % 97
	}
	return rem
}

// genCard returns a valid card number of a random scheme, compact.
func genCard(r *rand.Rand) string {
	schemes := []struct {
		prefix string
		n      int
	}{{"4", 16}, {"4", 13}, {"51", 16}, {"55", 16}, {"2221", 16}, {"34", 15}, {"37", 15}, {"6011", 16}, {"65", 16}, {"35", 16}, {"62", 19}, {"36", 14}}
	sc := schemes[r.IntN(len(schemes))]
	return luhnComplete(sc.prefix + digitsN(r, sc.n-len(sc.prefix)-1))
}

// genIBAN returns a valid IBAN of a random country (digits-only BBAN),
// compact.
func genIBAN(r *rand.Rand) string {
	countries := []struct {
		cc string
		n  int
	}{{"FR", 27}, {"DE", 22}, {"ES", 24}, {"IT", 27}, {"BE", 16}, {"NL", 18}, {"GB", 22}, {"CH", 21}, {"NO", 15}, {"PT", 25}, {"PL", 28}, {"AT", 20}}
	c := countries[r.IntN(len(countries))]
	bban := digitsN(r, c.n-4)
	num := bban + fmt.Sprint(int(c.cc[0]-'A'+10)) + fmt.Sprint(int(c.cc[1]-'A'+10)) + "00"
	return fmt.Sprintf("%s%02d%s", c.cc, 98-mod97(num), bban)
}

// genNIR returns a valid French NIR (15 characters), sometimes Corsican.
func genNIR(r *rand.Rand) string {
	dept := fmt.Sprintf("%02d", 1+r.IntN(95))
	n13 := ""
	switch r.IntN(4) {
	case 0:
		dept = "2A"
	case 1:
		dept = "2B"
	}
	n13 = fmt.Sprintf("%d%02d%02d%s%03d%03d", 1+r.IntN(2), r.IntN(100), 1+r.IntN(12), dept, 1+r.IntN(999), 1+r.IntN(999))
	num := strings.NewReplacer("2A", "19", "2B", "18").Replace(n13)
	return fmt.Sprintf("%s%02d", n13, 97-mod97(num))
}

// genDNI returns a Spanish DNI or NIE.
func genDNI(r *rand.Rand) string {
	const letters = "TRWAGMYFPDXBNJZSQVHLCKE"
	if r.IntN(2) == 0 {
		d := digitsN(r, 8)
		return d + string(letters[int(digitsValueRef(d))%23])
	}
	x := r.IntN(3)
	d := digitsN(r, 7)
	return string("XYZ"[x]) + d + string(letters[int(digitsValueRef(fmt.Sprint(x)+d))%23])
}

func digitsValueRef(d string) int64 {
	v, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		panic(err)
	}
	return v
}

// genNINO returns a UK National Insurance number.
func genNINO(r *rand.Rand) string {
	const first, second = "ABCEGHJKLMNPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"
	for {
		p := string(first[r.IntN(len(first))]) + string(second[r.IntN(len(second))])
		switch p {
		case "BG", "GB", "KN", "NK", "NT", "TN", "ZZ":
			continue
		}
		return p + digitsN(r, 6) + string("ABCD"[r.IntN(4)])
	}
}

// genByCheck draws random digit strings of length n until check accepts
// one (for the ids whose checks are rare to hit: German tax id, PESEL,
// Belgian national number, Swedish personnummer).
func genByCheck(r *rand.Rand, n int, check func(string) bool) string {
	for {
		if d := digitsN(r, n); check(d) {
			return d
		}
	}
}

// genCF returns an Italian codice fiscale (its check letter computed with
// ids.go's table, itself proven on a published example).
func genCF(r *rand.Rand) string {
	const months = "ABCDEHLMPRST"
	letters := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('A' + r.IntN(26))
		}
		return string(b)
	}
	base := letters(6) + digitsN(r, 2) + string(months[r.IntN(12)]) + fmt.Sprintf("%02d", 1+r.IntN(71)) + letters(1) + digitsN(r, 3)
	for c := byte('A'); c <= 'Z'; c++ {
		if isCodiceFiscale(base + string(c)) {
			return base + string(c)
		}
	}
	panic("no check letter")
}

// groupDigits writes d in groups of size g separated by sep.
func groupDigits(d string, g int, sep string) string {
	var parts []string
	for len(d) > g {
		parts = append(parts, d[:g])
		d = d[g:]
	}
	return strings.Join(append(parts, d), sep)
}

// genPhone returns a phone number that is valid for libphonenumber, in one
// of the common notations, and its significant digits (the subscriber part
// that must not survive).
func genPhone(r *rand.Rand) (string, string) {
	fr := "6" + string("0124567"[r.IntN(7)]) + digitsN(r, 7) // French mobile, allocated ranges
	de := "171" + digitsN(r, 7)
	uk := "207" + fmt.Sprint(1+r.IntN(8)) + digitsN(r, 6) // London
	us := "415" + fmt.Sprint(2+r.IntN(8)) + digitsN(r, 6)
	nbsp, nnbsp := "\u00a0", "\u202f"
	frg := func(sep string) string { return fr[:1] + sep + groupDigits(fr[1:], 2, sep) }
	switch r.IntN(16) {
	case 0:
		return "+33 " + frg(" "), fr
	case 1:
		return "+33" + nbsp + frg(nbsp), fr
	case 2:
		return "0" + frg(" "), fr
	case 3:
		return "0" + frg("."), fr
	case 4:
		return "0" + frg(nnbsp), fr
	case 5:
		return "0" + fr, fr
	case 6:
		return "+33 (0)" + frg(" "), fr
	case 7:
		return "0033 " + frg(" "), fr
	case 8:
		return "+49 " + de[:3] + " " + de[3:], de
	case 9:
		return "0" + de[:3] + "-" + de[3:6] + " " + de[6:8] + " " + de[8:], de
	case 10:
		return "0" + de[:3] + "/" + de[3:], de
	case 11:
		return "+44 (0)" + uk[:2] + " " + uk[2:6] + " " + uk[6:], uk
	case 12:
		return "0" + uk[:2] + " " + uk[2:6] + " " + uk[6:], uk
	case 13:
		return "(" + us[:3] + ") " + us[3:6] + "-" + us[6:], us
	case 14:
		return "+1 " + us[:3] + " " + us[3:6] + " " + us[6:] + " ext. " + digitsN(r, 3), us
	default:
		return "+" + "33" + fr, fr
	}
}

// genEmail returns an e-mail address with RFC-valid local characters and
// mixed case, and the same address in one of the encodings sites produce.
func genEmail(r *rand.Rand) (plain, encoded string) {
	locals := []string{"jane.doe", "o'brien", "first+tag", "a..b", "J.Smith_42", "x-y.z", "Jöhn", "u~n!i#q$u*e", "MiXeD.CaSe"}
	domains := []string{"example.org", "Example.COM", "mail.example.co.uk", "exämple.fr", "sub-domain.example.io"}
	plain = locals[r.IntN(len(locals))] + fmt.Sprint(r.IntN(1000)) + "@" + domains[r.IntN(len(domains))]
	local, domain, _ := strings.Cut(plain, "@")
	switch r.IntN(12) {
	case 0:
		return plain, plain
	case 1:
		return plain, local + "%40" + domain
	case 2:
		return plain, local + "%2540" + domain
	case 3:
		return plain, local + "%252540" + domain
	case 4:
		return plain, local + `\u0040` + domain
	case 5:
		return plain, local + "&#64;" + domain
	case 6:
		return plain, local + "&#x40;" + domain
	case 7:
		return plain, local + "&commat;" + domain
	case 8:
		return plain, local + "&amp;#64;" + domain
	case 9:
		return plain, local + " (at) " + strings.ReplaceAll(domain, ".", " [dot] ")
	case 10:
		return plain, local + "\uff20" + domain
	default:
		return plain, strings.ToUpper(plain)
	}
}

// genIP returns an IPv4 or IPv6 address literal in one of its written
// forms.
func genIP(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0, 1:
		return fmt.Sprintf("%d.%d.%d.%d", 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254))
	case 2:
		return fmt.Sprintf("2001:db8:%x:%x:%x:%x:%x:%x", r.IntN(65536), r.IntN(65536), r.IntN(65536), r.IntN(65536), r.IntN(65536), 1+r.IntN(65535))
	case 3:
		return fmt.Sprintf("2001:db8:%x::%x", 1+r.IntN(65535), 1+r.IntN(65535))
	case 4:
		return fmt.Sprintf("[fe80::%x:%x]", 1+r.IntN(65535), 1+r.IntN(65535))
	default:
		return fmt.Sprintf("::ffff:%d.%d.%d.%d", 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254))
	}
}

func randToken(r *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)

// genSecret returns a credential in one of the forms the scanner knows, and
// the secret part that must not survive.
func genSecret(r *rand.Rand) (string, string) {
	v := randToken(r, 10+r.IntN(10), alnum) + "9"
	switch r.IntN(8) {
	case 0:
		return "password=" + v, v
	case 1:
		return "pwd: " + v, v
	case 2:
		return "Authorization: Bearer " + v, v
	case 3:
		return "Bearer " + v + ".x", v
	case 4:
		k := "AKIA" + randToken(r, 16, upnum)
		return k, k
	case 5:
		k := "sk_live_" + randToken(r, 24, alnum)
		return k, k
	case 6:
		jwt := "eyJhbGciOiJIUzI1NiJ9.eyJ" + randToken(r, 20, b64url) + "." + randToken(r, 43, b64url)
		return jwt, jwt[20:]
	default:
		return "x-api-key=" + v, v
	}
}

var (
	firstNames = []string{"Jane", "Jean-Pierre", "Marie", "Émilie", "Ludwig", "Ana", "O'Brien", "Zoë", "Giulia", "Søren"}
	lastNames  = []string{"Doe", "Dupont", "van Beethoven", "Müller", "García", "Rossi", "Smith", "D'Angelo", "Kowalski"}
)

// genName returns a name after a cue, and the name.
func genName(r *rand.Rand) (string, string) {
	name := firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))]
	cues := []string{"Dear %s,", "Hello %s!", "Bonjour %s", "Mr %s", "Mme %s", "Herr %s", "Sra. %s", "Name: %s", "nom : %s",
		"Vorname=%s", "my name is %s", "Regards,\n%s", "je m'appelle %s", "Ciao %s"}
	return fmt.Sprintf(cues[r.IntN(len(cues))], name), name
}
