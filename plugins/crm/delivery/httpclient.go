package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// HTTPConfig configures NewHTTPClient.
type HTTPConfig struct {
	// AllowPrivate lets requests reach loopback, private (RFC 1918),
	// unique-local (fc00::/7) and shared (CGNAT, 100.64.0.0/10)
	// addresses, for a CRM or receiver on the internal network (and the
	// tests' fakes). Link-local (169.254.0.0/16 with the cloud metadata
	// service, fe80::/10), unspecified, multicast and broadcast addresses
	// are refused even then. Default false.
	AllowPrivate bool
	// ConnectTimeout bounds the TCP connection. Default 5s.
	ConnectTimeout time.Duration
	// Timeout bounds a whole request, answer included. Default 20s (the
	// Standard Webhooks specification recommends 15 to 30 s).
	Timeout time.Duration
	// Resolver resolves host names; nil uses net.DefaultResolver. Tests
	// inject one that answers from a local DNS server.
	Resolver *net.Resolver
}

// HTTP defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 20 * time.Second
)

// sharedNet is the shared address space of carrier-grade NAT.
var sharedNet = netip.MustParsePrefix("100.64.0.0/10")

// thisNet is 0.0.0.0/8, "this network".
var thisNet = netip.MustParsePrefix("0.0.0.0/8")

// nat64 is the well-known NAT64 prefix; its last 32 bits are an IPv4
// address, checked as such.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// addressClass names the class of a non-public address and whether
// AllowPrivate admits it; "" is a public address.
func addressClass(a netip.Addr) (class string, privateOK bool) {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		return addressClass(netip.AddrFrom4([4]byte(b[12:])))
	}
	switch {
	case a.IsUnspecified(), thisNet.Contains(a):
		return "unspecified", false
	case a.IsLoopback():
		return "loopback", true
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local", false
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast", false
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast", false
	case a.IsPrivate() && a.Is4():
		return "private", true
	case a.IsPrivate():
		return "unique-local", true
	case sharedNet.Contains(a):
		return "shared (CGNAT)", true
	}
	return "", true
}

// forbiddenError is a refused address; it matches ErrForbiddenAddress.
type forbiddenError struct {
	class string
	// privateOK: AllowPrivate would have admitted it.
	privateOK bool
}

func (e *forbiddenError) Error() string {
	msg := fmt.Sprintf("destination address not allowed (%s)", e.class)
	if e.privateOK {
		msg += "; set allow_private for an internal destination"
	}
	return msg
}

func (e *forbiddenError) Is(target error) bool { return target == ErrForbiddenAddress }

// forbiddenKind is the NetError kind for a refused address.
func forbiddenKind(err error) string {
	var fe *forbiddenError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	return ErrForbiddenAddress.Error()
}

// CheckAddress returns an error matching ErrForbiddenAddress when a is
// not a public address and allowPrivate does not admit it.
func CheckAddress(a netip.Addr, allowPrivate bool) error {
	class, privateOK := addressClass(a)
	if class == "" || (allowPrivate && privateOK) {
		return nil
	}
	return &forbiddenError{class: class, privateOK: privateOK}
}

// dialControl checks the address a connection is about to be made to,
// after name resolution: DNS rebinding cannot get around it.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if network != "tcp4" && network != "tcp6" {
			return &forbiddenError{class: "not TCP"}
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &forbiddenError{class: "unparsable"}
		}
		return CheckAddress(ap.Addr(), allowPrivate)
	}
}

// NewHTTPClient returns a client for destination requests: every
// connection's address is checked at connect time (net.Dialer.Control)
// against the SSRF policy, no proxy from the environment is used,
// redirects are never followed (the 3xx is returned and counts as a
// failure), and connection and total timeouts apply.
func NewHTTPClient(cfg HTTPConfig) *http.Client {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	dialer := &net.Dialer{
		Timeout:   cfg.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		Resolver:  cfg.Resolver,
		Control:   dialControl(cfg.AllowPrivate),
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ParseURL validates a configured destination URL: absolute http or
// https, a host, no credentials, no fragment; plain http only with
// allowPrivate (personal data does not cross the Internet in clear).
func ParseURL(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: url is not a valid URL", ErrConfig)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: url must start with https://", ErrConfig)
	case u.Scheme == "http" && !allowPrivate:
		return nil, fmt.Errorf("%w: url must use https (plain http only with allow_private)", ErrConfig)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w: url has no host", ErrConfig)
	case u.User != nil:
		return nil, fmt.Errorf("%w: url must not hold credentials; use the secrets", ErrConfig)
	case u.Fragment != "":
		return nil, fmt.Errorf("%w: url must not have a fragment", ErrConfig)
	}
	return u, nil
}

// CheckURL refuses, when a destination is configured, a URL whose host is
// an address the SSRF policy refuses, or a name resolving to one (with
// resolver; nil: net.DefaultResolver): the mistake is reported at start,
// naming the field, rather than at the first delivery. A name that does
// not resolve now passes (DNS may be down); every connection is checked
// again when it is made, which is what DNS rebinding cannot get around.
func CheckURL(ctx context.Context, u *url.URL, allowPrivate bool, resolver *net.Resolver) error {
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if err := CheckAddress(a, allowPrivate); err != nil {
			return fmt.Errorf("%w: url: %w", ErrConfig, err)
		}
		return nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := CheckAddress(a, allowPrivate); err != nil {
			return fmt.Errorf("%w: url: its host name resolves to an address that is not allowed: %w", ErrConfig, err)
		}
	}
	return nil
}
