// Package consent decides, for one event, what a visitor's consent allows:
// drop the event, keep it anonymous, or keep it pseudonymous for a set of
// purposes. It is pure code: no I/O, no logging, no global state other
// than the append-only purpose registry (see Register).
//
// Consent sources are read into Signals (FromPayload, FromHeaders,
// FromPixel; the ledger, TCF v2.2 and Consent Mode v2 add more Signals
// later) and combined by Decide under a site Policy.
//
// # Precedence
//
// Decide applies these rules, in order:
//
//  1. Start from Policy.Defaults.
//  2. Explicit signals (payload, segment, pixel, ledger, tcf, consent_mode,
//     and any other source that is not gpc/dnt) add the union of their
//     grants; then any explicit denial removes the purpose. A denial beats
//     a default and beats another source's grant (conservative).
//  3. GPC and DNT signals, when the policy honours them, remove what they
//     deny (marketing) even if explicitly granted. They never grant.
//  4. necessary is always granted; it cannot be denied.
//  5. The outcome is Pseudonymous if the granted set meets
//     Policy.Identifying, else Policy.Unconsented (Drop or Anonymous).
//
// Decision.Reason names the main factor, one of: "explicit grant",
// "default grant" (pseudonymous); "explicit denial", "gpc denial",
// "dnt denial", "no consent signal", "no identifying grant" (otherwise).
// When several apply, the first in that order wins (an explicit denial is
// reported before a gpc/dnt one). Reasons never contain personal data.
//
// # Pixel format
//
// The no-JS pixel's consent query parameter (FromPixel) is a
// comma-separated list of purposes, each optionally suffixed with ":1" /
// "=1" (grant) or ":0" / "=0" (deny); a bare name grants. "none" or "0"
// denies every non-necessary purpose, "all" or "1" grants every purpose.
// Example: "analytics,marketing:0". Names ignore ASCII case, blanks around
// tokens are ignored, unknown purposes are ignored, and when a value both
// grants and denies a purpose the denial wins ("none,analytics" grants
// nothing).
package consent
