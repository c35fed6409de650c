// Command campaign-normalizer is a Vigie enricher plugin that normalizes
// campaign attribution (Event.campaign source and medium): it trims and
// lower-cases them, maps aliases to canonical names ("fb", "m.facebook.com"
// → "facebook"; "e-mail", "newsletter" → "email"; "ppc", "paid" → "cpc"),
// and, when configured to, infers source and medium from the referrer host
// of a known search engine or social network.
//
// It is written only against github.com/vigie-dev/vigie/sdk and is the
// model for third-party plugins: see README.md, "Write a plugin in 10
// minutes". Vigie launches the binary and talks to it over go-plugin gRPC;
// started by hand it prints a notice and exits.
package main

import (
	"log/slog"
	"os"

	"github.com/vigie-dev/vigie/sdk"
)

// version is the plugin's own version, reported in its manifest.
const version = "1.0.0"

// configSchema is the JSON Schema of Config, shown by Vigie to whoever
// writes the plugin's section of vigie.yaml.
const configSchema = `{"type":"object","additionalProperties":false,"properties":{` +
	`"sources":{"type":"object","description":"source aliases to canonical names, merged over the built-in table",` +
	`"additionalProperties":{"type":"string","minLength":1}},` +
	`"mediums":{"type":"object","description":"medium aliases to canonical names, merged over the built-in table",` +
	`"additionalProperties":{"type":"string","minLength":1}},` +
	`"infer_from_referrer":{"type":"boolean","default":false,` +
	`"description":"set source and medium (organic, social) from a known search engine or social network referrer when the event has no source"}}}`

// pluginOf describes n as a Vigie plugin: its manifest and its hooks.
func pluginOf(n *Normalizer) sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:        "campaign-normalizer",
			Version:     version,
			Description: "Normalizes campaign source and medium to canonical names and infers them from known referrers.",
			Filter:      sdk.Filter{Types: []string{"page", "track"}},
			// No purpose: the plugin only rewrites campaign labels the
			// pipeline already kept for the event, and adds none that its
			// referrer host does not already imply, so it may see every
			// event consent let through. A plugin that used the campaign
			// for advertising (sending click ids to an ad platform, say)
			// would declare "marketing": Vigie would then hand it only the
			// events whose consent grants marketing.
			Purposes: []string{},
			// kv: per-source counters and the "unknown source already
			// reported" markers. Logging needs no capability. A call to a
			// service not declared here fails with sdk.ErrCapability.
			Capabilities: []sdk.Capability{sdk.CapKV},
			ConfigSchema: []byte(configSchema),
		},
		Configurer: n,
		Enricher:   n,
	}
}

func main() {
	n, err := New(Config{})
	if err != nil {
		// Never happens with the built-in tables; stdout is reserved for
		// the go-plugin handshake, so report on stderr.
		slog.Error("campaign-normalizer not started", "err", err)
		os.Exit(1)
	}
	sdk.Serve(pluginOf(n))
}
