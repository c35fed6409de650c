// Package consent decides, for one event, what a visitor's consent allows:
// drop the event, keep it anonymous, or keep it pseudonymous for a set of
// purposes. It is pure code: no I/O, no logging, no global state other
// than the append-only purpose registry (see Register).
//
// Consent sources are read into Signals (FromPayload, FromHeaders,
// FromPixel, FromQuery, FromTCF, FromGPP, FromConsentMode,
// FromConsentManagement; the ledger adds
// more) and combined by Decide under a site Policy. An undecodable
// consent string is reported and counts as no consent from that source.
//
// # Web consent standards
//
//   - IAB TCF v2.2 (package tcf): Policy.TCF maps TCF purposes to ours
//     (DefaultTCFPurposes: analytics ← 1, 8, 9, 10; personalization ← 1,
//     5, 6; marketing ← 1, 2, 3, 4, 7). A purpose is granted when all its
//     TCF purposes are consented (or under legitimate interest where
//     configured; never for 1 and 3-6) and, with a vendor id, our vendor
//     is too and no publisher restriction forbids it; otherwise it is
//     explicitly denied. gdprApplies=false ignores the string.
//   - IAB GPP (package gpp): its TCF EU v2 section maps as above; an
//     opt-out of sale, sharing or targeted advertising (or GPC) in the US
//     National or a CA/VA/CO/UT/CT section denies marketing. gpp_sid
//     limits the sections that apply.
//   - Google Consent Mode v2: the gcs/gcd hit parameters and the
//     {"ad_storage": "granted", ...} object, mapped by Policy.ConsentMode
//     (DefaultConsentMode: analytics ← analytics_storage; marketing ←
//     ad_storage, ad_user_data and ad_personalization; personalization ←
//     personalization_storage). Any mapped signal denied denies the
//     purpose; all granted grant it. The gcd letter table is documented
//     on gcdLetter in consentmode.go.
//   - RudderStack's context.consentManagement (its JavaScript SDK v3 with
//     OneTrust, Ketch, iubenda or a custom consent manager): allowed and
//     denied consent ids, mapped per provider by Policy.ConsentManagement
//     and then Policy.Categories (OneTrust C0001–C0005, iubenda 1–5 and
//     plain names by default), combined by its resolutionStrategy.
//
// # Precedence
//
// Decide applies these rules, in order:
//
//  1. Start from Policy.Defaults.
//  2. Explicit signals (payload, segment, pixel, ledger, tcf, consent_mode,
//     consent_management, and any other source that is not gpc/dnt) add
//     the union of their grants; then any explicit denial removes the
//     purpose. A denial beats
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
// denies every non-necessary purpose, "all" or "1" grants every purpose;
// neither touches sensitive, which is granted or denied only by name.
// Example: "analytics,marketing:0". Names ignore ASCII case, blanks around
// tokens are ignored, unknown purposes are ignored, and when a value both
// grants and denies a purpose the denial wins ("none,analytics" grants
// nothing).
package consent
