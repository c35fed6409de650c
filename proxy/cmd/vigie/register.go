package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/register"
)

const registerUsage = `usage: vigie register [--format markdown|json] [--config FILE] [--server URL] > register.md`

// registerCmd runs "vigie register": the register of processing (Art. 30)
// of the configuration, in Markdown or JSON, on stdout. Without --server it
// starts nothing: built-in plugins are described from their own manifests
// and external plugins are listed as not read; with --server it asks the
// running Vigie, whose plugins declared their manifests (admin token in
// VIGIE_ADMIN_TOKEN).
func registerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "markdown", "markdown or json")
	server := fs.String("server", "", "ask this running Vigie (e.g. https://track.example/); admin token in VIGIE_ADMIN_TOKEN")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 || (*format != "markdown" && *format != "json") {
		return errors.New(registerUsage)
	}
	if *server != "" {
		return remoteRegister(ctx, *server, *format, stdout)
	}
	reg := register.Build(register.Input{Config: cfg, Plugins: register.Plugins(cfg, nil), Generator: "Vigie " + proxy.Version})
	var b []byte
	if *format == "json" {
		if b, err = reg.JSON(); err != nil {
			return err
		}
	} else {
		b = reg.Markdown()
	}
	_, err = stdout.Write(b)
	return err
}

// remoteRegister copies GET /admin/v1/register of the server at base.
func remoteRegister(ctx context.Context, base, format string, stdout io.Writer) error {
	tok := os.Getenv("VIGIE_ADMIN_TOKEN")
	if tok == "" {
		return errors.New("vigie register: --server needs the admin token in VIGIE_ADMIN_TOKEN")
	}
	endpoint := strings.TrimSuffix(base, "/") + "/admin/v1/register?format=" + url.QueryEscape(format)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fmt.Errorf("vigie register: --server: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("vigie register: asking the server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vigie register: the server answered %d", resp.StatusCode)
	}
	_, err = io.Copy(stdout, io.LimitReader(resp.Body, 16<<20))
	return err
}
