package register

import (
	"encoding/json"
	"slices"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
)

// Plugins lists the enabled plugins of cfg with their manifests: the
// manifest a running plugin declared (running, from the plugin runtime),
// else for a built-in the manifest it declares, read without starting it
// (builtin.Manifest). An external plugin that is not running has no
// manifest: `vigie register` describes a stopped deployment without
// running third-party code.
func Plugins(cfg config.Config, running []plugins.PluginManifest) []Plugin {
	known := map[string]plugins.PluginManifest{}
	for _, m := range running {
		if m.Known {
			known[m.Name] = m
		}
	}
	var out []Plugin
	for _, p := range cfg.Plugins {
		if p.Disabled {
			continue
		}
		pl := Plugin{Name: p.Name, Builtin: p.Path == ""}
		if m, ok := known[p.Name]; ok {
			man := m.Manifest
			pl.Manifest = &man
		} else if pl.Builtin {
			if man, ok := builtin.Manifest(p.BuiltinName()); ok {
				// With what its configuration adds (a CRM
				// destination's purposes), as the runtime does.
				raw, _ := json.Marshal(p.Config)
				if c, err := builtin.Check(p.BuiltinName(), raw); err == nil {
					for _, pu := range c.Purposes {
						if !slices.Contains(man.Purposes, pu) {
							man.Purposes = append(man.Purposes, pu)
						}
					}
				}
				pl.Manifest = &man
			}
		}
		out = append(out, pl)
	}
	return out
}
