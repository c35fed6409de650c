package proxy

import "net"

// URL is the address at which this machine reaches the server, followed by
// path ("" before Start): an unspecified listen address (0.0.0.0, ::) is
// shown as the loopback one.
func (s *Server) URL(path string) string {
	if s.ln == nil {
		return ""
	}
	host, port, err := net.SplitHostPort(s.ln.Addr().String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + path
}
