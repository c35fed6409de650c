// Package tcf decodes IAB Transparency and Consent Framework v2.2 TC
// strings (https://github.com/InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework,
// "TCF v2.2 consent string and vendor list formats").
//
// # Format
//
// A TC string is one to four base64url segments (no padding) joined by
// '.'. The core segment comes first and starts with Version (6 bits,
// must be 2), then Created and LastUpdated (36 bits, deciseconds), CmpId,
// CmpVersion (12), ConsentScreen (6), ConsentLanguage (12: two 6-bit
// letters), VendorListVersion (12), TcfPolicyVersion (6),
// IsServiceSpecific, UseNonStandardTexts (1 each), SpecialFeatureOptins
// (12), PurposesConsent, PurposesLITransparency (24 each),
// PurposeOneTreatment (1), PublisherCC (12), the vendor consents and
// vendor legitimate interests (MaxVendorId 16, IsRangeEncoding 1, then a
// MaxVendorId-bit field or NumEntries 12 + entries of IsARange 1,
// StartOrOnlyVendorId 16 [, EndVendorId 16]) and the publisher
// restrictions (NumPubRestrictions 12, each PurposeId 6, RestrictionType
// 2, NumEntries 12 + range entries). Optional segments start with a 3-bit
// SegmentType: 1 disclosed vendors, 2 allowed vendors (both in the vendor
// set layout), 3 publisher TC (PubPurposesConsent 24,
// PubPurposesLITransparency 24, NumCustomPurposes 6, then two
// NumCustomPurposes-bit fields).
//
// Decode is strict (see ErrInvalid) and reads bits straight from the
// string: a bitfield vendor set costs no allocation, a range set one.
// testdata/gen.mjs encodes fixtures with the IAB reference implementation
// (npm @iabtechlabtcf/core); the tests decode every one and compare every
// field with the reference decoder.
package tcf
