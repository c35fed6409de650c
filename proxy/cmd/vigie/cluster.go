package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const clusterUsage = `usage: vigie cluster nodes [--server URL]
       vigie cluster remove NODE [--server URL]

"nodes" lists the members of the running Vigie's cluster (live or not);
"remove" takes a node that is down for good out of it, so that privacy
requests stop waiting for its step (refused while it is live). The admin
token is read from VIGIE_ADMIN_TOKEN.`

// clusterCmd runs "vigie cluster nodes|remove" against a running node's
// admin API (GET and DELETE /admin/v1/cluster/nodes).
func clusterCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(clusterUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "nodes", "remove":
	default:
		if helpFlags[cmd] {
			return showUsage(stdout, clusterUsage)
		}
		return fmt.Errorf("unknown cluster command %q\n%s", cmd, clusterUsage)
	}
	fs := newFlags("cluster "+cmd, clusterUsage, rest, stdout, stderr)
	node := ""
	if cmd == "remove" && !wantsHelp(rest) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return errors.New("usage: vigie cluster remove NODE (`vigie cluster nodes` lists them)")
		}
		node, rest = rest[0], rest[1:]
	}
	server := fs.String("server", "http://127.0.0.1:8080", "a running node of the cluster")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(clusterUsage)
	}
	tok := os.Getenv("VIGIE_ADMIN_TOKEN")
	if tok == "" {
		return errors.New("vigie cluster: the admin token is needed in VIGIE_ADMIN_TOKEN")
	}
	method, path := http.MethodGet, "/admin/v1/cluster/nodes"
	if cmd == "remove" {
		method, path = http.MethodDelete, path+"/"+url.PathEscape(node)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(*server, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("vigie cluster: --server: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("vigie cluster: asking the server: %w", err)
	}
	defer resp.Body.Close()
	if cmd == "remove" {
		var out struct{ Removed string }
		if err := decodeAnswer(resp, http.StatusOK, &out); err != nil {
			return fmt.Errorf("vigie cluster remove: %w", err)
		}
		fmt.Fprintf(stdout, "%s removed: privacy requests no longer wait for it\n", out.Removed)
		return nil
	}
	var out struct {
		Nodes []struct {
			Node   string    `json:"node"`
			Live   bool      `json:"live"`
			Self   bool      `json:"self"`
			SeenAt time.Time `json:"seen_at"`
		} `json:"nodes"`
	}
	if err := decodeAnswer(resp, http.StatusOK, &out); err != nil {
		return fmt.Errorf("vigie cluster nodes: %w", err)
	}
	for _, n := range out.Nodes {
		state := "down"
		if n.Live {
			state = "live"
		}
		self := ""
		if n.Self {
			self = " (this node)"
		}
		fmt.Fprintf(stdout, "%s\t%s\tlast seen %s%s\n", n.Node, state, n.SeenAt.Format(time.RFC3339), self)
	}
	return nil
}
