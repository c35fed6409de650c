package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
)

// TestAuthLimiterBoundedMemory: the limiter remembers at most MaxNetworks
// networks (the least recently failed is forgotten first) and forgets a
// network whose budget has refilled.
func TestAuthLimiterBoundedMemory(t *testing.T) {
	l, err := newAuthLimiter(config.Auth{FailureBurst: 2, FailureRefill: config.Duration(time.Second), MaxNetworks: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	net := func(i int) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24) }
	for i := range 10 {
		l.fail(net(i), now)
		l.fail(net(i), now)
	}
	if n := l.nets.Len(); n != 3 {
		t.Fatalf("%d networks remembered, want 3", n)
	}
	if _, ok := l.admit(net(9), now); ok {
		t.Fatal("a network over its budget is admitted")
	}
	if retry, _ := l.admit(net(9), now); retry != time.Second {
		t.Fatalf("retry %v, want 1s", retry)
	}
	if _, ok := l.admit(net(0), now); !ok {
		t.Fatal("an evicted network is still refused")
	}
	if _, ok := l.admit(net(9), now.Add(time.Second)); !ok {
		t.Fatal("not admitted after one refill")
	}
	if _, ok := l.admit(net(9), now.Add(2*time.Second)); !ok || l.nets.Contains(net(9)) {
		t.Fatal("a refilled network is still remembered")
	}
}
