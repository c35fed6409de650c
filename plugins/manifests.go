package plugins

import "github.com/vigie-dev/vigie/sdk"

// PluginManifest is a configured plugin and the manifest it declared.
type PluginManifest struct {
	// Name is the configured name.
	Name string
	// Builtin reports a plugin compiled into vigie.
	Builtin bool
	// Manifest is the plugin's manifest; Known is false while the plugin
	// has not started yet (its manifest is then unknown).
	Manifest sdk.Manifest
	Known    bool
}

// Manifests returns every configured plugin with its manifest, in
// configuration order (the register of processing lists them).
func (rt *Runtime) Manifests() []PluginManifest {
	out := make([]PluginManifest, 0, len(rt.order))
	for _, p := range rt.order {
		_, m, _, _ := p.snapshot()
		out = append(out, PluginManifest{Name: p.spec.Name, Builtin: p.spec.Path == "", Manifest: m, Known: m.Name != ""})
	}
	return out
}
