// Package email tracks marketing e-mails: it signs the tokens that open
// pixels and click links carry, rewrites an e-mail's HTML to add the pixel
// and wrap its links, classifies who fetched a pixel or followed a link
// (a person, a privacy proxy, a security scanner), and serves the two
// endpoints GET /e/o/{token} and GET /e/c/{token}.
//
// The package keeps nothing itself: it hands each hit to a Recorder and
// asks a ConsentLookup whether the recipient may be identified. Without
// consent a hit carries no recipient. A hit names a recipient only through
// a value Vigie signed: the recipient inside a per-recipient token, or a
// recipient value (Signer.SignRecipient, one per person, kept by the ESP as
// a contact attribute) in a merge-tag URL's r parameter; any other r counts
// at campaign level only. A click token whose signature fails
// never redirects. See README.md for marketers and for the classification
// heuristics.
package email
