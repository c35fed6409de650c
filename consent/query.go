package consent

import (
	"net/url"
	"strings"
)

// FromQuery reads the consent parameters of a pixel or e-mail hit:
//
//   - "consent": the pixel format (FromPixel) → SourcePixel;
//   - "gcs", "gcd": Google Consent Mode v2 (FromConsentMode) →
//     SourceConsentMode;
//   - "gdpr_consent" with "gdpr" ("0" means GDPR does not apply and the
//     string is ignored; "1" or absent means it applies) → SourceTCF;
//   - "gpp" with "gpp_sid" (comma-separated applicable sections) →
//     SourceGPP.
//
// Signals that grant or deny nothing are left out. Each value that cannot
// be read gives an error wrapping ErrInvalidConsent; that source then
// counts as no consent and the others are still returned.
func FromQuery(q url.Values, p Policy) ([]Signal, []error) {
	var out []Signal
	var errs []error
	add := func(s Signal, err error) {
		if err != nil {
			errs = append(errs, err)
		}
		if s.Granted.bits|s.Denied.bits != 0 {
			out = append(out, s)
		}
	}
	if v := q.Get("consent"); v != "" {
		add(FromPixel(v))
	}
	if gcs, gcd := q.Get("gcs"), q.Get("gcd"); gcs != "" || gcd != "" {
		add(FromConsentMode(gcs, gcd, p))
	}
	if v := q.Get("gdpr_consent"); v != "" {
		add(FromTCF(v, strings.TrimSpace(q.Get("gdpr")) != "0", p))
	}
	if v := q.Get("gpp"); v != "" {
		var sid []int
		if q.Has("gpp_sid") {
			s, err := parseSID(q.Get("gpp_sid"))
			if err != nil {
				errs = append(errs, err)
				return out, errs // applicability unknown: drop the GPP source
			}
			sid = s
		}
		add(FromGPP(v, sid, p))
	}
	return out, errs
}
