package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/delivery/deliverytest"
)

// TestSSRFRefused: every internal destination is refused at connect
// time, the server is never reached, and the error is final and names
// the address class, not the address.
func TestSSRFRefused(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolver := deliverytest.StartDNS(t, map[string]netip.Addr{
		"rebind.test":   netip.MustParseAddr("127.0.0.1"),
		"metadata.test": netip.MustParseAddr("169.254.169.254"),
		"intranet.test": netip.MustParseAddr("10.1.2.3"),
	})

	tests := []struct {
		name, url, class string
	}{
		{"loopback", "http://127.0.0.1:" + port + "/", "loopback"},
		{"loopback other", "http://127.9.9.9:" + port + "/", "loopback"},
		{"ipv6 loopback", "http://[::1]:" + port + "/", "loopback"},
		{"ipv4-mapped loopback", "http://[::ffff:127.0.0.1]:" + port + "/", "loopback"},
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"unspecified", "http://0.0.0.0:" + port + "/", "unspecified"},
		{"private", "http://10.0.0.1/", "private"},
		{"private 192.168", "http://192.168.1.1/", "private"},
		{"CGNAT", "http://100.64.1.1/", "CGNAT"},
		{"unique-local", "http://[fd00::1]/", "unique-local"},
		{"link-local v6", "http://[fe80::1]/", "link-local"},
		{"hostname resolving to loopback", "http://rebind.test:" + port + "/", "loopback"},
		{"hostname resolving to metadata", "http://metadata.test/", "link-local"},
		{"hostname resolving to private", "http://intranet.test/", "private"},
	}
	client := delivery.NewHTTPClient(delivery.HTTPConfig{Resolver: resolver, ConnectTimeout: time.Second, Timeout: 2 * time.Second})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(tt.url)
			r := &delivery.Requester{Client: client, Base: u, Limiter: delivery.NewLimiter(delivery.RateLimit{PerSecond: 1000})}
			_, err := r.Do(context.Background(), delivery.Request{Op: "test", Method: http.MethodGet})
			if !errors.Is(err, delivery.ErrForbiddenAddress) {
				t.Fatalf("err = %v, want delivery.ErrForbiddenAddress", err)
			}
			if c := delivery.Classify(err); c.Retryable {
				t.Errorf("refused address classified retryable")
			}
			if !strings.Contains(err.Error(), tt.class) {
				t.Errorf("error %q does not name the class %q", err, tt.class)
			}
			if host := u.Hostname(); strings.Contains(err.Error(), host) && net.ParseIP(host) != nil {
				t.Errorf("error %q names the address", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server was reached %d times", n)
	}
}

// TestAllowPrivate: allow_private lets loopback through (the fakes) but
// still refuses the metadata service's link-local address.
func TestAllowPrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	resolver := deliverytest.StartDNS(t, map[string]netip.Addr{"crm.test": netip.MustParseAddr("127.0.0.1")})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	client := delivery.NewHTTPClient(delivery.HTTPConfig{AllowPrivate: true, Resolver: resolver, Timeout: 2 * time.Second})
	for _, raw := range []string{srv.URL, "http://crm.test:" + port} {
		u, _ := url.Parse(raw)
		r := &delivery.Requester{Client: client, Base: u, Limiter: delivery.NewLimiter(delivery.RateLimit{PerSecond: 1000})}
		resp, err := r.Do(context.Background(), delivery.Request{Op: "test", Method: http.MethodGet})
		if err != nil || resp.Status != http.StatusNoContent {
			t.Fatalf("%s: resp %v, err %v", raw, resp, err)
		}
	}
	u, _ := url.Parse("http://169.254.169.254/")
	r := &delivery.Requester{Client: client, Base: u, Limiter: delivery.NewLimiter(delivery.RateLimit{PerSecond: 1000})}
	if _, err := r.Do(context.Background(), delivery.Request{Op: "test", Method: http.MethodGet}); !errors.Is(err, delivery.ErrForbiddenAddress) {
		t.Fatalf("metadata with allow_private: err = %v, want delivery.ErrForbiddenAddress", err)
	}
}

// TestRedirectNotFollowed: a redirect, here to an internal address, is
// returned as the 3xx and is a final failure; its target is never
// requested, even with allow_private.
func TestRedirectNotFollowed(t *testing.T) {
	var internalHits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { internalHits.Add(1) }))
	t.Cleanup(internal.Close)
	for _, target := range []string{internal.URL + "/admin", "http://169.254.169.254/latest/meta-data/"} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target, http.StatusFound)
		}))
		u, _ := url.Parse(redirector.URL)
		r := &delivery.Requester{
			Client:  delivery.NewHTTPClient(delivery.HTTPConfig{AllowPrivate: true, Timeout: 2 * time.Second}),
			Base:    u,
			Limiter: delivery.NewLimiter(delivery.RateLimit{PerSecond: 1000}),
		}
		resp, err := r.Do(context.Background(), delivery.Request{Op: "webhook", Method: http.MethodPost, Body: map[string]int{"a": 1}})
		redirector.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusFound {
			t.Fatalf("status %d, want 302 returned as is", resp.Status)
		}
		he := r.Error("webhook", resp)
		if c := delivery.Classify(he); c.Retryable || c.Status != http.StatusFound {
			t.Errorf("redirect classified %+v, want final 302", c)
		}
		if !strings.Contains(he.Error(), "redirect not followed") {
			t.Errorf("error %q does not say the redirect was not followed", he)
		}
	}
	if n := internalHits.Load(); n != 0 {
		t.Fatalf("redirect target reached %d times", n)
	}
}

// TestTimeout: a slow answer fails with a retryable timeout whose message
// holds no address.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(func() { close(release); srv.Close() })
	u, _ := url.Parse(srv.URL)
	r := &delivery.Requester{
		Client:  delivery.NewHTTPClient(delivery.HTTPConfig{AllowPrivate: true, Timeout: 200 * time.Millisecond}),
		Base:    u,
		Limiter: delivery.NewLimiter(delivery.RateLimit{PerSecond: 1000}),
	}
	_, err := r.Do(context.Background(), delivery.Request{Op: "slow", Method: http.MethodGet})
	var ne *delivery.NetError
	if !errors.As(err, &ne) || ne.Kind != "timeout" {
		t.Fatalf("err = %v, want a timeout delivery.NetError", err)
	}
	if !delivery.Classify(err).Retryable {
		t.Error("timeout not retryable")
	}
	if strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error %q names the address", err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw          string
		allowPrivate bool
		ok           bool
	}{
		{"https://hooks.example.com/vigie", false, true},
		{"http://hooks.example.com/vigie", false, false},
		{"http://127.0.0.1:8080/", true, true},
		{"ftp://example.com/", true, false},
		{"https://user:pass@example.com/", false, false},
		{"https:///path", false, false},
		{"https://example.com/#x", false, false},
		{"/relative", false, false},
	}
	for _, tt := range tests {
		_, err := delivery.ParseURL(tt.raw, tt.allowPrivate)
		if (err == nil) != tt.ok {
			t.Errorf("delivery.ParseURL(%q, %v) err = %v, want ok=%v", tt.raw, tt.allowPrivate, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, delivery.ErrConfig) || strings.Contains(err.Error(), "pass")) {
			t.Errorf("delivery.ParseURL(%q) error %q", tt.raw, err)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr                 string
		public, privateAllow bool
	}{
		{"93.184.216.34", true, true},
		{"2606:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"::1", false, true},
		{"::ffff:10.0.0.1", false, true},
		{"::ffff:169.254.169.254", false, false},
		{"172.16.5.4", false, true},
		{"100.127.255.255", false, true},
		{"100.128.0.1", true, true},
		{"169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"fc00::1", false, true},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"64:ff9b::7f00:1", false, true},
		{"64:ff9b::a9fe:a9fe", false, false},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := delivery.CheckAddress(a, false) == nil; got != tt.public {
			t.Errorf("delivery.CheckAddress(%s, false) allowed=%v, want %v", tt.addr, got, tt.public)
		}
		if got := delivery.CheckAddress(a, true) == nil; got != tt.privateAllow {
			t.Errorf("delivery.CheckAddress(%s, true) allowed=%v, want %v", tt.addr, got, tt.privateAllow)
		}
	}
}

// ExampleNewHTTPClient shows the client refusing a loopback destination.
func ExampleNewHTTPClient() {
	client := delivery.NewHTTPClient(delivery.HTTPConfig{})
	_, err := client.Get("http://127.0.0.1:9/")
	fmt.Println(errors.Is(err, delivery.ErrForbiddenAddress))
	// Output: true
}
