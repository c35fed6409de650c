package pseudonymize

import "net/netip"

// TruncateIP reduces an IP address to its network prefix: IPv4 to /24
// ("203.0.113.0/24"), IPv6 to /48 ("2001:db8:1::/48"). IPv4-mapped IPv6
// addresses are treated as IPv4 and zones are stripped. Anything that is
// not an IP address (including "host:port" forms) returns "", false.
func TruncateIP(s string) (prefix string, ok bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	return Network(addr).String(), true
}

// Network is the network of addr that Vigie keeps instead of the address:
// its /24 for IPv4 (IPv4-mapped IPv6 included), its /48 for IPv6, without
// zone. An invalid addr gives the zero Prefix.
func Network(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	pfx, _ := addr.Prefix(bits)
	return pfx
}
