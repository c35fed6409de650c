package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHTTPErrorLogRedactsAddresses(t *testing.T) {
	var buf bytes.Buffer
	w := redactIPs{h: slog.NewTextHandler(&buf, nil)}
	for _, line := range []string{
		"http: panic serving 203.0.113.9:51234: boom",
		"http: TLS handshake error from [2001:db8::7]:443: EOF",
		"http: TLS handshake error from 2001:db8:0:1::7: EOF",
	} {
		buf.Reset()
		if _, err := w.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Contains(out, "203.0.113.9") || strings.Contains(out, "2001:db8") || !strings.Contains(out, "[ip]") {
			t.Errorf("%q logged as %q", line, out)
		}
	}
}
