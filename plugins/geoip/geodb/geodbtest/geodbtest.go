// Package geodbtest writes small GeoIP databases for tests, with
// github.com/maxmind/mmdbwriter (the writer MaxMind maintains): GeoIP2
// City records that also hold what Vigie must never copy (coordinates,
// localized names, a second subdivision).
package geodbtest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Place is what a test database knows about a network. Empty parts are
// left out of its record.
type Place struct {
	Country, CountryName, Continent, Region, City, TimeZone, Postal string
}

// CityRecord is p as a GeoIP2 City record, with coordinates, an accuracy
// radius and French names besides the English ones.
func CityRecord(p Place) mmdbtype.Map {
	names := func(en string) mmdbtype.Map {
		return mmdbtype.Map{"en": mmdbtype.String(en), "fr": mmdbtype.String(en + "-fr")}
	}
	m := mmdbtype.Map{
		"continent":          mmdbtype.Map{"code": mmdbtype.String(p.Continent), "names": names("Continent " + p.Continent)},
		"country":            mmdbtype.Map{"iso_code": mmdbtype.String(p.Country), "names": names(p.CountryName)},
		"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("ZZ")},
		"location": mmdbtype.Map{
			"latitude": mmdbtype.Float64(48.8566), "longitude": mmdbtype.Float64(2.3522),
			"accuracy_radius": mmdbtype.Uint16(20), "time_zone": mmdbtype.String(p.TimeZone),
		},
	}
	if p.City != "" {
		m["city"] = mmdbtype.Map{"names": names(p.City), "geoname_id": mmdbtype.Uint32(42)}
	}
	if p.Region != "" {
		m["subdivisions"] = mmdbtype.Slice{
			mmdbtype.Map{"iso_code": mmdbtype.String(p.Region), "names": names("Region " + p.Region)},
			mmdbtype.Map{"iso_code": mmdbtype.String("SUB2")},
		}
	}
	if p.Postal != "" {
		m["postal"] = mmdbtype.Map{"code": mmdbtype.String(p.Postal)}
	}
	return m
}

// Write writes a database of dbType holding records (by CIDR) to path,
// replacing any file there atomically (write, then rename), and returns
// path.
func Write(t testing.TB, path, dbType string, ipVersion int, records map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		IPVersion:               ipVersion,
		RecordSize:              24,
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(network, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "db-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(tmp); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// City writes a GeoLite2-City database of places (by CIDR) as
// dir/GeoLite2-City.mmdb and returns its path.
func City(t testing.TB, dir string, places map[string]Place) string {
	t.Helper()
	recs := make(map[string]mmdbtype.Map, len(places))
	for cidr, p := range places {
		recs[cidr] = CityRecord(p)
	}
	return Write(t, filepath.Join(dir, "GeoLite2-City.mmdb"), "GeoLite2-City", 6, recs)
}
