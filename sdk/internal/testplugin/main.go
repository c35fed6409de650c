// Command testplugin is a tiny Vigie plugin used by the SDK's tests to
// exercise a real plugin process. It declares only the kv capability.
//
// Enrich counts the events it has seen in the plugin's key-value store
// (key "seen") and sets each event's Library to "testplugin/<count>"; an
// event named "emit" makes it call Emit, which the host must refuse.
//
// With -bad-handshake it prints a handshake for protocol version 99 and
// waits, to test the host's version check.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/vigie-dev/vigie/sdk"
)

// plug is the test plugin's hooks.
type plug struct{}

// Enrich implements sdk.Enricher.
func (plug) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	host := sdk.HostFrom(ctx)
	n := 0
	if v, err := host.KVGet(ctx, "seen"); err == nil {
		n, _ = strconv.Atoi(string(v))
	}
	for _, ev := range events {
		if ev.GetName() == "emit" {
			if err := host.Emit(ctx, ev); err != nil {
				return nil, fmt.Errorf("emit: %w", err)
			}
		}
		n++
		ev.Library = "testplugin/" + strconv.Itoa(n)
	}
	if err := host.KVPut(ctx, "seen", []byte(strconv.Itoa(n)), 0); err != nil {
		return nil, fmt.Errorf("kv put: %w", err)
	}
	host.Log(ctx, slog.LevelInfo, "enriched", slog.Int("events", len(events)))
	return events, nil
}

func main() {
	bad := flag.Bool("bad-handshake", false, "print a handshake for another protocol version")
	flag.Parse()
	if *bad {
		fmt.Println("1|99|unix|/nonexistent.sock|grpc|")
		time.Sleep(time.Minute)
		os.Exit(1)
	}
	sdk.Serve(sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:         "testplugin",
			Version:      "0.1.0",
			Filter:       sdk.Filter{Types: []string{"track", "page"}},
			Purposes:     []string{"analytics"},
			Capabilities: []sdk.Capability{sdk.CapKV},
		},
		Enricher: plug{},
	})
}
