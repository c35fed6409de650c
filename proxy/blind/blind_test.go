package blind_test

import (
	"bytes"
	"testing"

	"github.com/vigie-dev/vigie/proxy/blind"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ kind, in, region, want string }{
		{blind.Email, "  Jane.Doe@Example.ORG ", "", "jane.doe@example.org"},
		{blind.Phone, "+33 6 12 34 56 78", "", "+33612345678"},
		{blind.Phone, "06 12 34 56 78", "FR", "+33612345678"},
		{blind.Phone, "(06) 12-34-56-78", "", "0612345678"}, // no region: digits
		{blind.Phone, "12", "", ""},
		{blind.UserID, " user-42 ", "", "user-42"},
	} {
		if got := blind.Normalize(tc.kind, tc.in, tc.region); got != tc.want {
			t.Errorf("Normalize(%s, %q, %q) = %q, want %q", tc.kind, tc.in, tc.region, got, tc.want)
		}
	}
	if r := blind.Region("fr-FR"); r != "FR" {
		t.Errorf("Region = %q", r)
	}
}

func TestMAC(t *testing.T) {
	ix, _ := blind.New(bytes.Repeat([]byte{1}, 32))
	other, _ := blind.New(bytes.Repeat([]byte{2}, 32))
	a := ix.MAC("demo", blind.Email, "Jane@Example.org", "")
	switch {
	case len(a) != 16:
		t.Fatalf("MAC length %d", len(a))
	case !bytes.Equal(a, ix.MAC("demo", blind.Email, "jane@example.org ", "")):
		t.Error("normalized values differ")
	case bytes.Equal(a, ix.MAC("shop", blind.Email, "jane@example.org", "")):
		t.Error("sites share MACs")
	case bytes.Equal(a, ix.MAC("demo", blind.UserID, "jane@example.org", "")):
		t.Error("kinds share MACs")
	case bytes.Equal(a, other.MAC("demo", blind.Email, "jane@example.org", "")):
		t.Error("keys share MACs")
	case ix.MAC("demo", blind.Email, " ", "") != nil:
		t.Error("empty value has a MAC")
	}
	if _, err := blind.New(nil); err == nil {
		t.Error("New without a key")
	}
}
