package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestClusterCommandNames: the command reports the server's own words (a
// single node is not a cluster), needs the token and a node to remove.
func TestClusterCommandNames(t *testing.T) {
	in := proxytest.Start(t)
	tests := []struct {
		name  string
		token string
		args  []string
		want  string
	}{
		{"nodes of a single node", in.AdminToken(), []string{"cluster", "nodes", "--server", in.URL}, "409: this node does not run in cluster mode"},
		{"remove on a single node", in.AdminToken(), []string{"cluster", "remove", "v3", "--server", in.URL}, "409: this node does not run in cluster mode"},
		{"remove without a node", in.AdminToken(), []string{"cluster", "remove", "--server", in.URL}, "usage: vigie cluster remove NODE"},
		{"no token", "", []string{"cluster", "nodes", "--server", in.URL}, "VIGIE_ADMIN_TOKEN"},
		{"wrong token", "wrong", []string{"cluster", "nodes", "--server", in.URL}, "401"},
		{"unknown subcommand", in.AdminToken(), []string{"cluster", "join"}, `unknown cluster command "join"`},
	}
	for _, tc := range tests {
		t.Setenv("VIGIE_ADMIN_TOKEN", tc.token)
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
