package pseudonymize

import (
	"net/netip"
	"regexp"
	"testing"
	"time"
)

func TestMarkPathIDs(t *testing.T) {
	site := []*regexp.Regexp{regexp.MustCompile(`^[A-Z]{2}-\d{3}$`), regexp.MustCompile(`cust_[a-z]+`)}
	cases := []struct {
		in, want string
		n        int
	}{
		{"/orders/123456", "/orders/[id]", 1},
		{"/orders/12345", "/orders/12345", 0}, // 5 digits: a product, a page, a postal code
		{"/article/1234567-how-to-fold", "/article/[id]-how-to-fold", 1},
		{"/archive/20261126", "/archive/20261126", 0}, // a compact date
		{"/archive/20261399", "/archive/[id]", 1},
		{"/p/a3f9c2e1", "/p/[id]", 1},   // 8 hex digits
		{"/sku/A1B2C3", "/sku/[id]", 1}, // letter/digit changes
		{"/iphone-15-pro/2026", "/iphone-15-pro/2026", 0},
		{"/docs/v1.2.3/spring2026", "/docs/v1.2.3/spring2026", 0},
		{"/t/[token]/x", "/t/[token]/x", 0},
		{"/shop/FR-123", "/shop/[id]", 1},
		{"/a/cust_bob/orders", "/a/[id]/orders", 1},
		{"/caf%C3%A9/1234567", "/caf%C3%A9/[id]", 1},
		{"/u/123456%2F7654321", "/u/[id]%2F[id]", 2},
		{"", "", 0},
		{"/", "/", 0},
	}
	for _, tc := range cases {
		var c Counts
		got := MarkPathIDs(tc.in, site, &c)
		if got != tc.want || c.Of(ClassIdentifier) != tc.n {
			t.Errorf("MarkPathIDs(%q) = %q (%d), want %q (%d)", tc.in, got, c.Of(ClassIdentifier), tc.want, tc.n)
		}
		if again := MarkPathIDs(got, site, nil); again != got {
			t.Errorf("MarkPathIDs not idempotent: %q → %q", got, again)
		}
	}
}

func TestCompilePathPatterns(t *testing.T) {
	if _, err := CompilePathPatterns([]string{`^\d+$`, `ord-[0-9]+`}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`(`, `.*`} {
		if _, err := CompilePathPatterns([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestPeriodID(t *testing.T) {
	p, err := New(Config{Keys: []Key{{ID: "k1", Secret: secret(1)}, {ID: "k0", Secret: secret(2)}}})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 1, 31, 23, 59, 0, 0, time.UTC)
	d1, d2 := RotateDaily.Period(day), RotateDaily.Period(day.Add(2*time.Minute))
	if d1 != "2026-01-31" || d2 != "2026-02-01" || RotateMonthly.Period(day) != "2026-01" || RotateNever.Period(day) != "" {
		t.Fatalf("periods %q %q %q", d1, d2, RotateMonthly.Period(day))
	}
	a, b := p.PeriodID("s", AnonymousID, "v", d1), p.PeriodID("s", AnonymousID, "v", d2)
	stable := p.ID("s", AnonymousID, "v")
	if a == b || a == stable || b == stable || len(a) != 22 {
		t.Fatalf("period pseudonyms %q %q stable %q", a, b, stable)
	}
	if p.PeriodID("s", AnonymousID, "v", d1) != a || p.PeriodID("s", AnonymousID, "v", "") != stable || p.PeriodID("s", AnonymousID, "", d1) != "" {
		t.Fatal("PeriodID is not a function of its arguments")
	}
	if p.PeriodID("s", UserID, "v", d1) == a || p.PeriodID("t", AnonymousID, "v", d1) == a {
		t.Fatal("PeriodID not separated by kind and site")
	}
	// Many periods: the derived-key cache stays bounded and answers alike.
	for i := range 3 * maxPeriodKeys {
		p.PeriodID("s", AnonymousID, "v", RotateDaily.Period(day.AddDate(0, 0, i)))
	}
	if p.PeriodID("s", AnonymousID, "v", d1) != a || len(p.periods.keys) > maxPeriodKeys {
		t.Fatal("derived key cache")
	}
	if p.PeriodKeyID(d1) != "k1@2026-01-31" || p.PeriodKeyID("") != "k1" {
		t.Fatalf("key ids %q %q", p.PeriodKeyID(d1), p.PeriodKeyID(""))
	}
	for s, want := range map[string]Rotation{"": RotateNever, "never": RotateNever, "daily": RotateDaily, "monthly": RotateMonthly} {
		if r, err := ParseRotation(s); err != nil || r != want {
			t.Errorf("ParseRotation(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := ParseRotation("weekly"); err == nil {
		t.Error("weekly accepted")
	}
}

func TestClickIDsPseudonymized(t *testing.T) {
	p, err := New(Config{Keys: []Key{{ID: "k1", Secret: secret(1)}}, ExportClickIDs: []string{"gclid", "li_*"}})
	if err != nil {
		t.Fatal(err)
	}
	got := p.ClickIDs("s", map[string]string{"gclid": "G", "li_fat_id": "L", "fbclid": "F"})
	if got["gclid"] != "G" || got["li_fat_id"] != "L" || got["fbclid"] != p.ID("s", ClickID, "F") {
		t.Fatalf("ClickIDs = %v", got)
	}
	if p.ClickIDs("s", nil) != nil {
		t.Fatal("ClickIDs(nil) not nil")
	}
}

func TestNetworkBits(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":           "192.0.0.0/16",
		"::ffff:192.0.2.77":    "192.0.0.0/16",
		"2001:db8:1:2::5":      "2001:db8::/32",
		"fe80::1%eth0":         "fe80::/32",
		"2001:db8:abcd:1234::": "2001:db8::/32",
	} {
		if got := NetworkBits(netip.MustParseAddr(in), 16, 32).String(); got != want {
			t.Errorf("NetworkBits(%s) = %s, want %s", in, got, want)
		}
	}
	// Never finer than Network.
	if got := NetworkBits(netip.MustParseAddr("192.0.2.77"), 32, 128).String(); got != "192.0.2.0/24" {
		t.Errorf("NetworkBits finer than /24: %s", got)
	}
}
