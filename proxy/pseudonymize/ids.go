package pseudonymize

// Checks of numbers that identify a person or an account: payment cards
// (Luhn and issuer prefix), IBANs (mod 97 and country length) and the
// national numbers listed in classifyIDRun and classifyDigits. Each check
// takes ASCII input (digits, or uppercase letters and digits) and never
// allocates.

// luhn reports whether the digit string d passes the Luhn check.
func luhn(d string) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// isCard reports a payment card number: 13–19 digits with a known issuer
// prefix and length, passing Luhn.
func isCard(d string) bool {
	n := len(d)
	if n < 13 || n > 19 {
		return false
	}
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	var ok bool
	switch {
	case d[0] == '4': // Visa
		ok = n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		ok = n == 16
	case p2 == 34 || p2 == 37: // American Express
		ok = n == 15
	case p2 == 36 || p2 == 38 || p2 == 39 || (p4 >= 3000 && p4 <= 3059): // Diners
		ok = n >= 14 && n <= 19
	case p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499): // Discover
		ok = n >= 16
	case p2 == 35: // JCB
		ok = n >= 16
	case p2 == 62 || p2 == 81: // UnionPay
		ok = n >= 16
	case p2 == 50 || (p2 >= 56 && p2 <= 69): // Maestro and local schemes
		ok = n >= 13
	case p4 >= 2200 && p4 <= 2204: // Mir
		ok = n >= 16
	}
	return ok && luhn(d)
}

// ibanLengths is the length of an IBAN per country (SWIFT IBAN registry).
var ibanLengths = map[[2]byte]uint8{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28, {'B', 'A'}: 20, {'B', 'E'}: 16,
	{'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27, {'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22,
	{'C', 'Y'}: 28, {'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27, {'D', 'K'}: 18, {'D', 'O'}: 28, {'E', 'E'}: 20,
	{'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18, {'F', 'K'}: 18, {'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22,
	{'G', 'E'}: 22, {'G', 'I'}: 23, {'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'N'}: 28, {'H', 'R'}: 21,
	{'H', 'U'}: 28, {'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26, {'I', 'T'}: 27, {'J', 'O'}: 30,
	{'K', 'W'}: 30, {'K', 'Z'}: 20, {'L', 'B'}: 28, {'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20,
	{'L', 'V'}: 21, {'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19, {'M', 'N'}: 20,
	{'M', 'R'}: 27, {'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28, {'N', 'L'}: 18, {'N', 'O'}: 15, {'O', 'M'}: 23,
	{'P', 'K'}: 24, {'P', 'L'}: 28, {'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22,
	{'R', 'U'}: 33, {'S', 'A'}: 24, {'S', 'C'}: 31, {'S', 'D'}: 18, {'S', 'E'}: 24, {'S', 'I'}: 19, {'S', 'K'}: 24,
	{'S', 'M'}: 27, {'S', 'O'}: 23, {'S', 'T'}: 25, {'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26,
	{'U', 'A'}: 29, {'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20, {'Y', 'E'}: 30,
}

// ibanLength is the IBAN length for the country code at the start of s
// (letters in any case), or 0.
func ibanLength(s string) int {
	if len(s) < 2 {
		return 0
	}
	return int(ibanLengths[[2]byte{upper(s[0]), upper(s[1])}])
}

// isIBAN reports whether s (letters in any case, no separators) is an IBAN
// of its country's length whose check digits pass mod 97.
func isIBAN(s string) bool {
	if len(s) < 15 || ibanLength(s) != len(s) || !isDigit(s[2]) || !isDigit(s[3]) {
		return false
	}
	rem := 0
	for k := 0; k < len(s); k++ {
		c := upper(s[(k+4)%len(s)])
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case 'A' <= c && c <= 'Z':
			rem = (rem*100 + int(c-'A') + 10) % 97
		default:
			return false
		}
	}
	return rem == 1
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// digitsValue is the value of a digit string of at most 18 digits.
func digitsValue(d string) int64 {
	var v int64
	for i := 0; i < len(d); i++ {
		v = v*10 + int64(d[i]-'0')
	}
	return v
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// isNIR reports a French social security number (NIR): 13 characters and a
// 2-digit key equal to 97 − (number mod 97); Corsican departments 2A and 2B
// count as 19 and 18. The first digit is 1–4, 7 or 8.
func isNIR(s string) bool {
	if len(s) != 15 || !isDigit(s[0]) || !allDigits(s[13:]) {
		return false
	}
	switch s[0] {
	case '1', '2', '3', '4', '7', '8':
	default:
		return false
	}
	var buf [13]byte
	copy(buf[:], s[:13])
	if buf[5] == '2' && (buf[6] == 'A' || buf[6] == 'a') {
		buf[5], buf[6] = '1', '9'
	} else if buf[5] == '2' && (buf[6] == 'B' || buf[6] == 'b') {
		buf[5], buf[6] = '1', '8'
	}
	n := unsafeString(buf[:])
	if !allDigits(n) {
		return false
	}
	month := int(n[3]-'0')*10 + int(n[4]-'0')
	if month == 0 || (month > 12 && month < 20) || (month > 42 && month < 50) {
		return false
	}
	return 97-digitsValue(n)%97 == digitsValue(s[13:])
}

// isSSN reports a US social security number's three groups (area 001–899
// except 666, group 01–99, serial 0001–9999).
func isSSN(area, group, serial string) bool {
	if len(area) != 3 || len(group) != 2 || len(serial) != 4 {
		return false
	}
	a := digitsValue(area)
	return a != 0 && a != 666 && a < 900 && digitsValue(group) != 0 && digitsValue(serial) != 0
}

// isSteuerID reports a German tax id (Steuer-IdNr): 11 digits, no leading
// 0, in the first ten exactly one digit repeated (twice, or three times
// not all in a row), ISO 7064 MOD 11,10 check digit.
func isSteuerID(d string) bool {
	if len(d) != 11 || d[0] == '0' {
		return false
	}
	var freq [10]int
	for i := 0; i < 10; i++ {
		freq[d[i]-'0']++
	}
	repeated := 0
	for v, f := range freq {
		switch {
		case f > 3:
			return false
		case f == 3:
			for i := 0; i+2 < 10; i++ {
				if int(d[i]-'0') == v && d[i] == d[i+1] && d[i] == d[i+2] {
					return false
				}
			}
			repeated++
		case f == 2:
			repeated++
		}
	}
	if repeated != 1 {
		return false
	}
	product := 10
	for i := 0; i < 10; i++ {
		sum := (int(d[i]-'0') + product) % 10
		if sum == 0 {
			sum = 10
		}
		product = sum * 2 % 11
	}
	check := 11 - product
	if check == 10 {
		check = 0
	}
	return check == int(d[10]-'0')
}

// isBelgianNN reports a Belgian national register number: YYMMDD, a 3-digit
// serial and a 2-digit check 97 − (first nine mod 97), with 2 prefixed for
// people born from 2000; the month may carry +20 or +40 (bis numbers).
func isBelgianNN(d string) bool {
	if len(d) != 11 {
		return false
	}
	month := int(d[2]-'0')*10 + int(d[3]-'0')
	day := int(d[4]-'0')*10 + int(d[5]-'0')
	if month%20 > 12 || month > 52 || day > 31 {
		return false
	}
	first := digitsValue(d[:9])
	check := digitsValue(d[9:])
	return 97-first%97 == check || 97-(2000000000+first)%97 == check
}

// isPESEL reports a Polish PESEL: YYMMDD (month + 20/40/60/80 for other
// centuries), serial, weighted check digit.
func isPESEL(d string) bool {
	if len(d) != 11 {
		return false
	}
	month := int(d[2]-'0')*10 + int(d[3]-'0')
	day := int(d[4]-'0')*10 + int(d[5]-'0')
	if m := month % 20; m == 0 || m > 12 || day == 0 || day > 31 {
		return false
	}
	weights := [10]int{1, 3, 7, 9, 1, 3, 7, 9, 1, 3}
	sum := 0
	for i, w := range weights {
		sum += w * int(d[i]-'0')
	}
	return (10-sum%10)%10 == int(d[10]-'0')
}

// isSwedishPN reports a Swedish personal identity number YYMMDDNNNC (day
// + 60 for coordination numbers) whose ten digits pass Luhn.
func isSwedishPN(d string) bool {
	if len(d) != 10 {
		return false
	}
	month := int(d[2]-'0')*10 + int(d[3]-'0')
	day := int(d[4]-'0')*10 + int(d[5]-'0')
	if day > 60 {
		day -= 60
	}
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && luhn(d)
}

// dniLetters are the check letters of Spanish DNI and NIE numbers.
const dniLetters = "TRWAGMYFPDXBNJZSQVHLCKE"

// isDNIOrNIE reports a Spanish DNI (8 digits and a check letter) or NIE
// (X, Y or Z, 7 digits and a check letter); letters in any case.
func isDNIOrNIE(s string) bool {
	if len(s) != 9 {
		return false
	}
	var v int64
	switch upper(s[0]) {
	case 'X':
		v = 0
	case 'Y':
		v = 1
	case 'Z':
		v = 2
	default:
		if !isDigit(s[0]) {
			return false
		}
		v = int64(s[0] - '0')
	}
	if !allDigits(s[1:8]) {
		return false
	}
	v = v*10000000 + digitsValue(s[1:8])
	return upper(s[8]) == dniLetters[v%23]
}

// isNINO reports a UK National Insurance number: two prefix letters (not
// D, F, I, Q, U, V, not O second, not BG, GB, KN, NK, NT, TN, ZZ), six
// digits and a suffix A–D; letters in any case.
func isNINO(s string) bool {
	if len(s) != 9 || !allDigits(s[2:8]) {
		return false
	}
	a, b, suffix := upper(s[0]), upper(s[1]), upper(s[8])
	if a < 'A' || a > 'Z' || b < 'A' || b > 'Z' || suffix < 'A' || suffix > 'D' {
		return false
	}
	switch a {
	case 'D', 'F', 'I', 'Q', 'U', 'V':
		return false
	}
	switch b {
	case 'D', 'F', 'I', 'O', 'Q', 'U', 'V':
		return false
	}
	switch string([]byte{a, b}) {
	case "BG", "GB", "KN", "NK", "NT", "TN", "ZZ":
		return false
	}
	return true
}

// cfOdd are the values of characters at odd positions (1st, 3rd, …) of an
// Italian codice fiscale, for 0–9 and A–Z.
var cfOdd = [36]int{
	1, 0, 5, 7, 9, 13, 15, 17, 19, 21, // 0-9
	1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23, // A-Z
}

// isCodiceFiscale reports an Italian tax code: 6 letters, 2 digits, a month
// letter, 2 digits, a letter and 3 digits (digits may be replaced by
// LMNPQRSTUV for homonyms), and a check letter; letters in any case.
func isCodiceFiscale(s string) bool {
	if len(s) != 16 {
		return false
	}
	var u [16]byte
	for i := range u {
		u[i] = upper(s[i])
	}
	letter := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	digitish := func(c byte) bool { return isDigit(c) || (c != 0 && indexByte("LMNPQRSTUV", c) >= 0) }
	for i := 0; i < 6; i++ {
		if !letter(u[i]) {
			return false
		}
	}
	if !digitish(u[6]) || !digitish(u[7]) || indexByte("ABCDEHLMPRST", u[8]) < 0 || !digitish(u[9]) || !digitish(u[10]) ||
		!letter(u[11]) || !digitish(u[12]) || !digitish(u[13]) || !digitish(u[14]) || !letter(u[15]) {
		return false
	}
	sum := 0
	for i := 0; i < 15; i++ {
		c := u[i]
		idx := int(c - '0')
		if letter(c) {
			idx = int(c-'A') + 10
		}
		if i%2 == 0 {
			sum += cfOdd[idx]
		} else if letter(c) {
			sum += int(c - 'A')
		} else {
			sum += int(c - '0')
		}
	}
	return u[15] == byte('A'+sum%26)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// classifyIDRun classifies a run of letters and digits (separators already
// removed, 8–34 characters): an IBAN, a national id with letters (UK NINO,
// Spanish DNI/NIE, Italian codice fiscale, French NIR of Corsica), or
// nothing (NumClasses).
func classifyIDRun(s string) Class {
	switch {
	case len(s) >= 15 && ibanLength(s) == len(s) && isIBAN(s):
		return ClassIBAN
	case len(s) == 9 && (isNINO(s) || isDNIOrNIE(s)):
		return ClassNationalID
	case len(s) == 16 && isCodiceFiscale(s):
		return ClassNationalID
	case len(s) == 15 && isNIR(s):
		return ClassNationalID
	}
	return NumClasses
}

// classifyDigits classifies a digit string by checksum: a payment card, a
// national number (French NIR, Belgian national number, German tax id,
// Polish PESEL), or nothing (NumClasses). It is what a JSON number is
// checked against, and the first check of a digit span in text.
func classifyDigits(d string) Class {
	if isCard(d) {
		return ClassCard
	}
	switch len(d) {
	case 11:
		if isBelgianNN(d) || isSteuerID(d) || isPESEL(d) {
			return ClassNationalID
		}
	case 15:
		if isNIR(d) {
			return ClassNationalID
		}
	}
	return NumClasses
}
