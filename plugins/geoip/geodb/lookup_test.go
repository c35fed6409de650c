package geodb

import (
	"net/netip"
	"testing"
)

func TestLookupAddr(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" when not looked up
	}{
		{"192.0.2.0/24", "192.0.2.0"},
		{"192.0.2.77/24", "192.0.2.0"},
		{"192.0.2.77", "192.0.2.0"},
		{"192.0.2.77/32", "192.0.2.0"},
		{"10.0.0.0/8", "10.0.0.0"},
		{"2001:db8:1::/48", "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1::"},
		{"2001:db8:1:2::/64", "2001:db8:1::"},
		{"fe80::1%eth0", "fe80::"},
		{"::ffff:192.0.2.99", "192.0.2.0"},
		{"::ffff:192.0.2.0/120", "192.0.2.0"},
		{"", ""},
		{"garbage", ""},
		{"192.0.2.0/33", ""},
	}
	for _, tc := range cases {
		got, ok := LookupAddr(tc.in)
		if tc.want == "" {
			if ok {
				t.Errorf("LookupAddr(%q) = %v, want no lookup", tc.in, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("LookupAddr(%q) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
}

func FuzzLookupAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "2001:db8::/48", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/0", "", "::/129"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, ok := LookupAddr(s)
		if !ok {
			return
		}
		if addr.Is4In6() || addr.Zone() != "" {
			t.Fatalf("LookupAddr(%q) = %v: mapped or zoned", s, addr)
		}
		limit := maxBitsV6
		if addr.Is4() {
			limit = maxBitsV4
		}
		if p, _ := addr.Prefix(limit); p.Addr() != addr {
			t.Fatalf("LookupAddr(%q) = %v: finer than /%d", s, addr, limit)
		}
	})
}
