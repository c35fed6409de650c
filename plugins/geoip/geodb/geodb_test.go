package geodb_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb/geodbtest"
)

// TestOpenAndLookup: files are looked up in order, the first with data
// wins, empty paths are skipped, and what is not a database is refused.
func TestOpenAndLookup(t *testing.T) {
	dir := t.TempDir()
	city := geodbtest.City(t, dir, map[string]geodbtest.Place{
		"192.0.2.0/24": {Country: "FR", CountryName: "France", Continent: "EU", Region: "IDF", City: "Paris", TimeZone: "Europe/Paris", Postal: "75001"},
	})
	v6 := geodbtest.Write(t, filepath.Join(dir, "v6.mmdb"), "city ipv6", 6, map[string]mmdbtype.Map{
		"2001:db8::/32": {"country_code": mmdbtype.String("DE"), "city": mmdbtype.String("Berlin"), "postcode": mmdbtype.String("10115")},
	})
	db, err := geodb.Open(city, "", v6)
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Files()) != 2 {
		t.Fatalf("%d files, want 2", len(db.Files()))
	}
	cases := []struct {
		addr  string
		found bool
		want  geodb.Record
	}{
		{"192.0.2.0", true, geodb.Record{Country: "FR", CountryName: "France", Region: "IDF", City: "Paris", Continent: "EU", TimeZone: "Europe/Paris", Postal: "75001"}},
		{"2001:db8:1::", true, geodb.Record{Country: "DE", City: "Berlin", Postal: "10115"}},
		{"198.51.100.0", false, geodb.Record{}},
	}
	for _, tc := range cases {
		var rec geodb.Record
		found, err := db.Lookup(netip.MustParseAddr(tc.addr), &rec)
		if err != nil || found != tc.found || found && rec != tc.want {
			t.Errorf("Lookup(%s) = %v %+v %v, want %v %+v", tc.addr, found, rec, err, tc.found, tc.want)
		}
	}
	if g := cases[0].want.Geo(false); g.GetPostalCode() != "" || g.GetCity() != "Paris" {
		t.Errorf("Geo without postal: %v", g)
	}
	junk := filepath.Join(dir, "junk.mmdb")
	if err := os.WriteFile(junk, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{junk, filepath.Join(dir, "missing.mmdb")} {
		if _, err := geodb.Open(p); !errors.Is(err, geodb.ErrDatabase) {
			t.Errorf("Open(%s) = %v, want ErrDatabase", filepath.Base(p), err)
		}
	}
	if db, err := geodb.Open(); err != nil || len(db.Files()) != 0 {
		t.Errorf("Open() = %v, %v", db, err)
	}
}
