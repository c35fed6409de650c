// Package crm is the built-in CRM sync: it sends consented contacts, their
// segments and score to a CRM (HubSpot, Brevo) or a signed webhook, and
// unsubscribes or deletes them downstream on withdrawal, objection,
// restriction and erasure. It is written against package sdk only.
//
// Each destination is one plugin entry running this built-in
// (`builtin: crm`, a name of its own, the destination's Config as its
// config): its own process, JetStream consumers, dead letters, metrics and
// step in a privacy request. The host gives it sync items with the
// contact attached only as consent allows (package plugins), and the
// profile; the plugin maps them to delivery.Change values (changes.go),
// delivers them in one batch per call, and answers per item: done, not
// supported, failed for good (dead-lettered with the status and a
// redacted body excerpt), or deferred while the destination is
// unavailable (not counted against the item). Its status goes to its
// key-value space (StatusKey) after every batch.
package crm

import "github.com/vigie-dev/vigie/sdk"

// Name is the built-in's name (`builtin: crm`).
const Name = "crm"

// Version is the plugin's version.
const Version = "0.1.0"

// Manifest is the built-in's manifest. Its purposes are each
// destination's (Config.Purposes), added by the host (plugins.Spec.
// Purposes).
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name: Name, Version: Version,
		Description:  "CRM sync: consented contacts with their segments and score, and their withdrawals and erasures, to HubSpot, Brevo or a signed webhook.",
		Capabilities: []sdk.Capability{sdk.CapContactsResolve, sdk.CapProfilesRead, sdk.CapKV},
	}
}

// Plugin returns the built-in with a fresh Destination.
func Plugin() sdk.Plugin {
	d := NewDestination(Options{})
	return sdk.Plugin{Manifest: Manifest(), Configurer: d, Syncer: d, Forgetter: d}
}

// Main serves the plugin (`vigie plugin crm`).
func Main() { sdk.Serve(Plugin()) }
