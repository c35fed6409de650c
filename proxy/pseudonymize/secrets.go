package pseudonymize

import (
	"encoding/base64"
	"strings"
)

// awsKeyPrefixes start AWS access key ids (20 characters, [A-Z0-9]).
var awsKeyPrefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA", "ASCA"}

// isAWSKeyID reports an AWS access key id.
func isAWSKeyID(run string) bool {
	if len(run) != 20 {
		return false
	}
	for i := 0; i < len(run); i++ {
		if c := run[i]; !isDigit(c) && (c < 'A' || c > 'Z') {
			return false
		}
	}
	for _, p := range awsKeyPrefixes {
		if strings.HasPrefix(run, p) {
			return true
		}
	}
	return false
}

// secretPrefixes start API keys and tokens of well-known services (Stripe,
// GitHub, GitLab, Slack, Google, Shopify, npm, PyPI, Hugging Face, Square,
// Stripe webhooks).
var secretPrefixes = []string{
	"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_",
	"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
	"xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "AIza",
	"shpat_", "shpss_", "shpca_", "npm_", "pypi-", "hf_", "sq0atp-", "sq0csp-",
}

// hasSecretPrefix reports a run of ≥ 16 bytes with a known secret prefix
// and at least 8 bytes after it.
func hasSecretPrefix(run string) bool {
	if len(run) < 16 {
		return false
	}
	for _, p := range secretPrefixes {
		if strings.HasPrefix(run, p) && len(run)-len(p) >= 8 {
			return true
		}
	}
	return false
}

// matchJWT matches a JSON Web Token whose header is the token run s[i:j]:
// "eyJ…" '.' "eyJ…" ['.' signature]. It returns the end, or 0.
func matchJWT(s string, i, j int) int {
	if j-i < 10 || !strings.HasPrefix(s[i:j], "eyJ") || j >= len(s) || s[j] != '.' {
		return 0
	}
	k := j + 1
	e := k
	for e < len(s) && isTokenByte(s[e]) {
		e++
	}
	if e-k < 4 || !strings.HasPrefix(s[k:e], "eyJ") {
		return 0
	}
	if e < len(s) && s[e] == '.' {
		f := e + 1
		for f < len(s) && isTokenByte(s[f]) {
			f++
		}
		return f
	}
	return e
}

// secretKeys are credential names (normalized: lowercase letters and
// digits) whose value, after '=' or ':', is a secret.
var secretKeys = map[string]bool{
	"password": true, "passwd": true, "passwort": true, "passphrase": true, "passcode": true, "pwd": true,
	"motdepasse": true, "contrasena": true, "contraseña": true, "kennwort": true, "senha": true,
	"secret": true, "clientsecret": true, "apisecret": true, "secretkey": true, "apikey": true, "accesskey": true,
	"accesskeyid": true, "awssecretaccesskey": true, "privatekey": true,
	"token": true, "accesstoken": true, "refreshtoken": true, "idtoken": true, "authtoken": true, "sessiontoken": true,
	"csrftoken": true, "xsrftoken": true, "bearertoken": true,
	"sessionid": true, "sessid": true, "phpsessid": true, "jsessionid": true, "sid": true,
	"authorization": true, "auth": true, "otp": true, "pin": true, "cvv": true, "cvc": true, "cvv2": true,
}

// secretSuffixes make any key ending in them a credential name, and
// secretSubstrings any key containing them.
var (
	secretSuffixes   = []string{"secret", "token", "apikey", "sessionid"}
	secretSubstrings = []string{"password", "passwd", "passwort", "motdepasse", "contrasena"}
)

// isSecretKey reports a normalized credential name.
func isSecretKey(norm string) bool {
	if secretKeys[norm] {
		return true
	}
	for _, suf := range secretSuffixes {
		if strings.HasSuffix(norm, suf) {
			return true
		}
	}
	for _, sub := range secretSubstrings {
		if strings.Contains(norm, sub) {
			return true
		}
	}
	return false
}

// authSchemes are HTTP authorization schemes followed by a credential.
var authSchemes = map[string]bool{"bearer": true, "basic": true, "digest": true, "token": true}

// secretValueEnd returns the end of a credential value starting at s[i]:
// everything up to white space, a quote, or '&', ';', ',', '<', '>' and
// closing brackets.
func secretValueEnd(s string, i int) int {
	j := i
	for j < len(s) {
		switch s[j] {
		case ' ', '\t', '\r', '\n', '"', '\'', '&', ';', ',', '<', '>', ')', ']', '}':
			return j
		}
		j++
	}
	return j
}

// isCredential reports a plausible credential after an authorization
// scheme: ≥ 8 bytes of base64/token characters with a digit or one of
// "+/=._~-".
func isCredential(v string) bool {
	if len(v) < 8 {
		return false
	}
	special := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isAlpha(c):
		case isDigit(c) || strings.IndexByte("+/=._~-", c) >= 0:
			special = true
		default:
			return false
		}
	}
	return special
}

// matchSecretValue matches "key = value" / "key: value" after a credential
// name ending at s[i]: it returns the value's span, or 0, 0.
func matchSecretValue(s string, i int) (start, end int) {
	j := i
	for j < len(s) && j-i < 3 && (s[j] == ' ' || s[j] == '"' || s[j] == '\'') {
		j++
	}
	if j >= len(s) || (s[j] != '=' && s[j] != ':') {
		return 0, 0
	}
	j++
	for j < len(s) && j-i < 8 && (s[j] == ' ' || s[j] == '"' || s[j] == '\'') {
		j++
	}
	if j >= len(s) || isMarkerAt(s, j) {
		return 0, 0
	}
	end = secretValueEnd(s, j)
	if end == j {
		return 0, 0
	}
	// "Authorization: Bearer <credential>": the scheme and the credential.
	if w := s[j:end]; len(w) <= 6 && authSchemes[strings.ToLower(w)] && end+1 < len(s) && s[end] == ' ' && !isMarkerAt(s, end+1) {
		if e := secretValueEnd(s, end+1); e > end+1 {
			end = e
		}
	}
	return j, end
}

// matchAuthScheme matches the credential after the authorization scheme
// word scheme ending at s[i] ("Bearer abc…"): its span, or 0, 0. A Basic
// credential is base64 of "user:password".
func matchAuthScheme(s string, i int, scheme string) (start, end int) {
	if i+1 >= len(s) || s[i] != ' ' || isMarkerAt(s, i+1) {
		return 0, 0
	}
	end = secretValueEnd(s, i+1)
	v := s[i+1 : end]
	if scheme == "basic" {
		if dec, err := base64.StdEncoding.DecodeString(v); err != nil || len(v) < 8 || !strings.Contains(string(dec), ":") {
			return 0, 0
		}
	} else if !isCredential(v) {
		return 0, 0
	}
	return i + 1, end
}
