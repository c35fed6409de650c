package pseudonymize

import (
	"math/rand/v2"
	"testing"
)

// TestChecks proves each check on published valid numbers (test card
// numbers of the schemes, the IBAN registry's examples, the issuers'
// specimen ids) and on the same numbers with one digit changed.
func TestChecks(t *testing.T) {
	tests := []struct {
		check func(string) bool
		name  string
		valid []string
	}{
		{isCard, "card", []string{"4111111111111111", "4012888888881881", "4222222222222", "5555555555554444", "5105105105105100",
			"2223003122003222", "378282246310005", "371449635398431", "6011111111111117", "6011000990139424", "3530111333300000",
			"30569309025904", "38520000023237", "6200000000000005"}},
		{isIBAN, "IBAN", []string{"FR7630006000011234567890189", "DE89370400440532013000", "GB82WEST12345698765432", "NL91ABNA0417164300",
			"BE68539007547034", "ES9121000418450200051332", "IT60X0542811101000000123456", "CH9300762011623852957", "NO9386011117947",
			"fr7630006000011234567890189"}},
		{isNIR, "NIR", []string{"185057800608491", "285052A00608482", "185052B00608462"}},
		{isSteuerID, "Steuer-ID", []string{"86095742719"}},
		{isBelgianNN, "Belgian national number", []string{"85073003328"}},
		{isPESEL, "PESEL", []string{"44051401359"}},
		{isSwedishPN, "personnummer", []string{"8112289874"}},
		{isDNIOrNIE, "DNI/NIE", []string{"12345678Z", "X1234567L", "y1234567x"}},
		{isCodiceFiscale, "codice fiscale", []string{"RSSMRA85T10A562S", "rssmra85t10a562s"}},
		{isNINO, "NINO", []string{"AB123456C", "ab123456d"}},
	}
	for _, tt := range tests {
		for _, v := range tt.valid {
			if !tt.check(v) {
				t.Errorf("%s %q rejected", tt.name, v)
			}
			// Changing any one digit breaks every check but NINO's (which
			// has none).
			if tt.name == "NINO" {
				continue
			}
			for i := 0; i < len(v); i++ {
				if !isDigit(v[i]) {
					continue
				}
				b := []byte(v)
				b[i] = '0' + (b[i]-'0'+1)%10
				if tt.check(string(b)) {
					t.Errorf("%s %q accepted", tt.name, b)
				}
			}
		}
	}
	for _, bad := range []string{"", "FR", "FR76", "XX7630006000011234567890189", "FR763000600001123456789018"} {
		if isIBAN(bad) {
			t.Errorf("isIBAN(%q)", bad)
		}
	}
	for _, bad := range []string{"BG123456A", "GB123456A", "DA123456A", "AO123456A", "AB123456E", "AB12345C"} {
		if isNINO(bad) {
			t.Errorf("isNINO(%q)", bad)
		}
	}
	for _, bad := range [][3]string{{"000", "12", "3456"}, {"666", "12", "3456"}, {"900", "12", "3456"}, {"123", "00", "4567"}, {"123", "45", "0000"}} {
		if isSSN(bad[0], bad[1], bad[2]) {
			t.Errorf("isSSN(%v)", bad)
		}
	}
	// Card numbers: one changed digit breaks Luhn.
	if isCard("4111111111111112") || isCard("1111111111111117") || isCard("411111111111111") {
		t.Error("invalid card accepted")
	}
}

// TestLuhnAgainstReference compares ids.go's Luhn with the generators'
// independent one on random input.
func TestLuhnAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		d := digitsN(r, 12+r.IntN(8))
		if luhn(d) != luhnRef(d) {
			t.Fatalf("luhn(%s) = %v", d, luhn(d))
		}
	}
}
