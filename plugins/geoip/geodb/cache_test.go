package geodb

import (
	"errors"
	"net/netip"
	"testing"
)

// countingReader answers from a fixed table and counts lookups.
type countingReader struct {
	calls int
	fail  bool
}

func (c *countingReader) lookup(addr netip.Addr, rec *Record) (bool, error) {
	c.calls++
	if c.fail {
		return false, errors.New("corrupt record")
	}
	if addr.Is4() {
		*rec = Record{Country: "FR"}
		return true, nil
	}
	return false, nil
}

func (c *countingReader) describe() string { return "counting" }

func TestDBCache(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("2001:db8::")
	cases := []struct {
		name      string
		fail      bool
		addrs     []netip.Addr
		wantCalls int
	}{
		{"hit served from cache", false, []netip.Addr{v4, v4, v4}, 1},
		{"miss cached too", false, []netip.Addr{v6, v6}, 1},
		{"distinct addresses", false, []netip.Addr{v4, v6, v4, v6}, 2},
		{"errors not cached", true, []netip.Addr{v4, v4}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{fail: tc.fail}
			d := newDB(r)
			for _, a := range tc.addrs {
				var rec Record
				found, err := d.lookup(a, &rec)
				if tc.fail != (err != nil) {
					t.Fatalf("lookup(%v) error %v", a, err)
				}
				if !tc.fail && found != a.Is4() || found && rec.Country != "FR" {
					t.Fatalf("lookup(%v) = %v %+v", a, found, rec)
				}
			}
			if r.calls != tc.wantCalls {
				t.Errorf("reader called %d times, want %d", r.calls, tc.wantCalls)
			}
		})
	}
}

func TestDBCacheBounded(t *testing.T) {
	d := newDB(&countingReader{})
	var rec Record
	for i := range cacheSize + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, err := d.lookup(a, &rec); err != nil {
			t.Fatal(err)
		}
		if len(d.cache) > cacheSize {
			t.Fatalf("cache holds %d entries, more than %d", len(d.cache), cacheSize)
		}
	}
}
