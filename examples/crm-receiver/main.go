// Command crm-receiver receives the webhooks of Vigie's CRM sync
// (Standard Webhooks v1): it verifies each request's signature (constant
// time, 5-minute tolerance, several secrets during a rotation), ignores a
// webhook-id it has already processed, and prints each new message as a
// JSON line on standard output.
//
//	WEBHOOK_SECRET=whsec_… go run ./examples/crm-receiver -addr 127.0.0.1:8787
//
// WEBHOOK_SECRET holds one secret, or several separated by spaces or
// commas (old and new during a rotation). verify.mjs is the same check in
// Node. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigie-dev/vigie/examples/crm-receiver/receiver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv("WEBHOOK_SECRET"), os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "crm-receiver:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, when set, receives the listening
// address.
func run(ctx context.Context, args []string, secrets string, out io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("crm-receiver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8787", "listen address")
	path := fs.String("path", "/", "path webhooks are posted to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list := strings.FieldsFunc(secrets, func(r rune) bool { return r == ' ' || r == ',' })
	if len(list) == 0 {
		return errors.New("set WEBHOOK_SECRET to the destination's whsec_ secret")
	}
	verifier, err := receiver.NewVerifier(list...)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	mux := http.NewServeMux()
	mux.Handle("POST "+*path, &receiver.Handler{
		Verifier: verifier,
		OnMessage: func(id string, m receiver.Message) error {
			mu.Lock()
			defer mu.Unlock()
			return enc.Encode(map[string]any{"id": id, "type": m.Type, "timestamp": m.Timestamp, "data": m.Data})
		},
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	slog.Info("crm-receiver listening", "addr", ln.Addr().String(), "path", *path)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
