package geodb

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Longest prefixes ever looked up, matching the pipeline's truncation.
const (
	maxBitsV4 = 24
	maxBitsV6 = 48
)

// LookupAddr returns the address to look up for an event's ip_prefix: the
// network address of the prefix, never finer than /24 (IPv4) or /48
// (IPv6) even if the field holds a longer prefix or a bare address.
func LookupAddr(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	var addr netip.Addr
	var bits int
	if p, err := netip.ParsePrefix(s); err == nil {
		addr, bits = p.Addr(), p.Bits()
	} else if a, err := netip.ParseAddr(s); err == nil {
		addr, bits = a.WithZone(""), a.BitLen()
	} else {
		return netip.Addr{}, false
	}
	if addr.Is4In6() {
		addr, bits = addr.Unmap(), max(bits-96, 0)
	}
	limit := maxBitsV6
	if addr.Is4() {
		limit = maxBitsV4
	}
	p, err := addr.Prefix(min(bits, limit))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// Record is the part of a database record Vigie uses: never coordinates.
type Record struct {
	// Country is the ISO 3166-1 alpha-2 code, CountryName its English name.
	Country, CountryName string
	// Region is the first subdivision's ISO 3166-2 code (without country);
	// empty for databases that have none (ip-location-db).
	Region string
	// City is the city's English name.
	City string
	// Continent is the two-letter continent code.
	Continent string
	// TimeZone is the IANA time zone.
	TimeZone string
	// Postal is the postal code.
	Postal string
}

// Geo returns r as an event's Geo; the postal code only when asked.
func (r *Record) Geo(postal bool) *vigiev1.Geo {
	g := &vigiev1.Geo{
		Country:     r.Country,
		CountryName: r.CountryName,
		Region:      r.Region,
		City:        r.City,
		Continent:   r.Continent,
		TimeZone:    r.TimeZone,
	}
	if postal {
		g.PostalCode = r.Postal
	}
	return g
}

// reader is one opened database.
type reader interface {
	// lookup fills rec for addr and reports whether the database has data
	// for it. An address of a family the database does not hold is not
	// found, not an error.
	lookup(addr netip.Addr, rec *Record) (bool, error)
	// describe names the database type and build time, for logs.
	describe() string
}

// stamp identifies one version of a file on disk.
type stamp struct {
	modNs int64
	size  int64
}

// openDB reads the database at path into memory and opens it. Reading the
// file instead of memory-mapping it keeps a reader valid after the file is
// replaced or rewritten in place, so a reload never needs to wait for
// lookups in flight: the old reader is left to the garbage collector.
func openDB(path string) (reader, stamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("%w: %w", ErrDatabase, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("%w: %w", ErrDatabase, err)
	}
	st := stamp{modNs: fi.ModTime().UnixNano(), size: fi.Size()}
	buf, err := io.ReadAll(f)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %w", ErrDatabase, err)
	}
	r, err := openBytes(buf)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %s: %w", ErrDatabase, path, err)
	}
	return r, st, nil
}

// openBytes opens a database held in buf: the GeoIP2 schema (MaxMind
// GeoIP2/GeoLite2 City or Country, DB-IP Lite) through geoip2, or the flat
// schema of the ip-location-db project ("city ipv4", "country ipv6"…).
func openBytes(buf []byte) (reader, error) {
	g, err := geoip2.OpenBytes(buf)
	if err == nil {
		// ASN, ISP, Domain… databases open but have no location.
		var method geoip2.InvalidMethodError
		if _, err := g.City(netip.IPv4Unspecified()); errors.As(err, &method) {
			return nil, fmt.Errorf("database type %q has no location data; use a City or Country database", method.DatabaseType)
		}
		return &geoip2Reader{r: g}, nil
	}
	var unknown geoip2.UnknownDatabaseTypeError
	if !errors.As(err, &unknown) {
		return nil, err
	}
	m, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, err
	}
	if !isFlatType(m.Metadata.DatabaseType) {
		return nil, fmt.Errorf("database type %q is neither a GeoIP2 City/Country nor an ip-location-db city/country database", m.Metadata.DatabaseType)
	}
	return &flatReader{r: m}, nil
}

// isFlatType reports whether t names an ip-location-db database.
func isFlatType(t string) bool {
	kind, family, ok := strings.Cut(t, " ")
	return ok && (kind == "city" || kind == "country") && (family == "ipv4" || family == "ipv6")
}

// geoip2Reader reads GeoIP2-schema databases.
type geoip2Reader struct {
	r *geoip2.Reader
}

func (g *geoip2Reader) lookup(addr netip.Addr, rec *Record) (bool, error) {
	if addr.Is6() && g.r.Metadata().IPVersion == 4 {
		return false, nil
	}
	c, err := g.r.City(addr)
	if err != nil {
		return false, err
	}
	if !c.Country.HasData() && !c.Continent.HasData() && !c.City.HasData() {
		return false, nil
	}
	*rec = Record{
		Country:     c.Country.ISOCode,
		CountryName: c.Country.Names.English,
		City:        c.City.Names.English,
		Continent:   c.Continent.Code,
		TimeZone:    c.Location.TimeZone,
		Postal:      c.Postal.Code,
	}
	if len(c.Subdivisions) > 0 {
		rec.Region = c.Subdivisions[0].ISOCode
	}
	return true, nil
}

func (g *geoip2Reader) describe() string {
	md := g.r.Metadata()
	return fmt.Sprintf("%s built %s", md.DatabaseType, time.Unix(int64(md.BuildEpoch), 0).UTC().Format(time.DateOnly))
}

// flatRecord is an ip-location-db record. Its state1 is a subdivision
// name, not an ISO code, so it is not used for region.
type flatRecord struct {
	CountryCode string `maxminddb:"country_code"`
	City        string `maxminddb:"city"`
	Postcode    string `maxminddb:"postcode"`
	Timezone    string `maxminddb:"timezone"`
}

// flatReader reads ip-location-db databases.
type flatReader struct {
	r *maxminddb.Reader
}

func (f *flatReader) lookup(addr netip.Addr, rec *Record) (bool, error) {
	if addr.Is6() && f.r.Metadata.IPVersion == 4 {
		return false, nil
	}
	res := f.r.Lookup(addr)
	if !res.Found() {
		return false, res.Err()
	}
	var fr flatRecord
	if err := res.Decode(&fr); err != nil {
		return false, err
	}
	*rec = Record{Country: fr.CountryCode, City: fr.City, TimeZone: fr.Timezone, Postal: fr.Postcode}
	return fr.CountryCode != "", nil
}

func (f *flatReader) describe() string {
	md := f.r.Metadata
	return fmt.Sprintf("%s built %s", md.DatabaseType, time.Unix(int64(md.BuildEpoch), 0).UTC().Format(time.DateOnly))
}
