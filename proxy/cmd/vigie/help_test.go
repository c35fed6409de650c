package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestHelpStartsNothing: `vigie help`, `vigie --help`, `vigie help CMD`
// and `vigie CMD --help` print the commands or the command's usage and
// flags on stdout, succeed, and start and change nothing: they return at
// once, no listener, no ./vigie-data, no ./vigie-secrets.
func TestHelpStartsNothing(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "Commands:"},
		{[]string{"--help"}, "keys master new"},
		{[]string{"-h"}, "-data-dir"},
		{[]string{"--listen", "LISTEN", "--help"}, "-listen"},
		{[]string{"help", "help"}, "Commands:"},
		{[]string{"version", "--help"}, "usage: vigie version"},
		{[]string{"help", "check"}, "usage: vigie check"},
		{[]string{"check", "--help"}, "-config"},
		{[]string{"keys", "--help"}, "vigie keys rewrap"},
		{[]string{"help", "keys"}, "vigie keys list"},
		{[]string{"keys", "list", "--help"}, "-data-dir"},
		{[]string{"keys", "rotate", "-h"}, "-data-dir"},
		{[]string{"keys", "retire", "--help"}, "retire ID"},
		{[]string{"keys", "rewrap", "--help"}, "-new-key-file"},
		{[]string{"keys", "master", "--help"}, "keys master new"},
		{[]string{"keys", "master", "new", "--help"}, "-out"},
		{[]string{"admin", "--help"}, "admin token reset"},
		{[]string{"admin", "token", "reset", "--help"}, "-print"},
		{[]string{"email", "--help"}, "vigie email tokens"},
		{[]string{"email", "rewrite", "--help"}, "-merge-tag"},
		{[]string{"help", "email", "tokens"}, "-expires-in"},
		{[]string{"bench", "--help"}, "-events-per-batch"},
		{[]string{"tokens", "--help"}, "vigie tokens revoke ID"},
		{[]string{"tokens", "create", "--help"}, "-role"},
		{[]string{"tokens", "revoke", "--help"}, "revoke ID"},
		{[]string{"help", "tokens", "list"}, "tokens list"},
		{[]string{"sites", "--help"}, "vigie sites add ID"},
		{[]string{"sites", "add", "--help"}, "-origin"},
		{[]string{"import", "--help"}, "-map"},
		{[]string{"help", "import"}, "vigie import FILE"},
		{[]string{"cluster", "--help"}, "vigie cluster remove NODE"},
		{[]string{"cluster", "remove", "--help"}, "-server"},
	} {
		name := strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			onTerminal(t, true) // admin token reset would print, not refuse
			addr := freePort(t)
			args := append([]string(nil), c.args...)
			for i, a := range args {
				if a == "LISTEN" {
					args[i] = addr
				}
			}
			var out, errOut syncBuf
			done := make(chan error, 1)
			go func() { done <- run(context.Background(), args, &out, &errOut) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("vigie %s: %v\n%s", name, err, errOut.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("vigie %s did not return: it started something\n%s%s", name, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), c.want) {
				t.Fatalf("vigie %s printed on stdout:\n%s\nwant %q (stderr: %s)", name, out.String(), c.want, errOut.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Fatalf("vigie %s created %v", name, entries)
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatalf("vigie %s left a listener on %s", name, addr)
			}
		})
	}
}

// TestUnknownCommandStartsNothing: an unknown command is an error naming
// it, not a server started with the word ignored.
func TestUnknownCommandStartsNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var out, errOut syncBuf
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), []string{"--listen", freePort(t), "serve"}, &out, &errOut) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `unknown command "serve"`) {
			t.Fatalf("vigie serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("vigie serve started a server")
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Fatalf("created %v", entries)
	}
}

// TestReadyPrintsURLsAndSecondVigieRefused: once ready, vigie prints the
// console's and the demo's URLs, / leads to the console, and a second vigie on the same data directory says the first
// one has it, with its pid, and exits.
func TestReadyPrintsURLsAndSecondVigieRefused(t *testing.T) {
	t.Chdir(t.TempDir())
	var second error
	var home string
	stdout, _ := serveOnce(t, nil, func(url string) {
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		home = resp.Status + " " + resp.Header.Get("Location")
		var out, errOut syncBuf
		second = run(context.Background(), []string{"--listen", freePort(t)}, &out, &errOut)
	})
	for _, want := range []string{"listening on http://127.0.0.1:", "Console:  http://127.0.0.1:", "/console/", "Demo:     http://127.0.0.1:", "/demo/"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if home != "302 Found /console/" {
		t.Errorf("GET /: %s, want a redirect to /console/", home)
	}
	want := "Vigie is already running with this data directory (pid " + strconv.Itoa(os.Getpid()) + ")"
	if second == nil || !strings.Contains(second.Error(), want) {
		t.Fatalf("second vigie: %v, want %q", second, want)
	}
}
