// gen.mjs encodes a varied set of TC models with the IAB reference
// implementation (@iabtechlabtcf/core) and writes fixtures.json: each TC
// string with the fields the reference decoder reads back. The Go test
// (consent/tcf) decodes every string and compares every field.
//
//   cd consent/tcf/testdata && npm ci && node gen.mjs
import { writeFileSync } from 'node:fs';
import { GVL, TCModel, TCString, PurposeRestriction, RestrictionType } from '@iabtechlabtcf/core';

// A synthetic global vendor list: no network access. Vendor ids that are
// multiples of 7 above 1000 do not exist (gaps let the encoder merge restriction
// ranges across them); odd vendors declare flexible purposes.
function vendorList() {
  const names = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [i + 1, { id: i + 1, name: `p${i + 1}`, description: '', illustrations: [] }]));
  const vendors = {};
  for (let id = 1; id <= 1500; id++) {
    if (id > 1000 && id % 7 === 0) continue;
    const odd = id % 2 === 1;
    vendors[id] = {
      id, name: `vendor ${id}`,
      purposes: odd ? [1, 3, 4, 5, 6, 7] : [1, 2, 3, 4],
      legIntPurposes: odd ? [2, 8, 9, 10, 11] : [7, 8, 9, 10],
      flexiblePurposes: odd ? [2, 7, 8, 9, 10] : [],
      specialPurposes: [1, 2], features: [1], specialFeatures: odd ? [1, 2] : [],
      policyUrl: 'https://example.com', cookieMaxAgeSeconds: 3600, usesCookies: true,
      cookieRefresh: false, usesNonCookieAccess: false, dataRetention: { stdRetention: 30, purposes: {}, specialPurposes: {} },
      dataDeclaration: [1], urls: [],
    };
  }
  return {
    gvlSpecificationVersion: 3, vendorListVersion: 321, tcfPolicyVersion: 4,
    lastUpdated: '2026-01-01T00:00:00Z',
    purposes: names(11), specialPurposes: names(2), features: names(3), specialFeatures: names(2),
    stacks: {}, dataCategories: names(11), vendors,
  };
}
const GVL_JSON = vendorList();

// Deterministic pseudo-random numbers (mulberry32).
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const randomIds = (seed, max, p) => { const r = rng(seed); return range(1, max).filter(() => r() < p); };

const cases = [
  { name: 'minimal empty consent', build: () => {} },
  { name: 'bitfield vendors, all purposes', build: (m) => {
    m.purposeConsents.set(range(1, 11)); m.purposeLegitimateInterests.set([2, 7, 8, 9, 10, 11]);
    m.vendorConsents.set(randomIds(1, 400, 0.5)); m.vendorLegitimateInterests.set(randomIds(2, 300, 0.4));
    m.specialFeatureOptins.set([1, 2]);
  } },
  { name: 'range vendors, long runs', build: (m) => {
    m.purposeConsents.set([1, 7, 8, 9, 10]);
    m.vendorConsents.set([...range(1, 600), ...range(800, 1200), 1499]);
    m.vendorLegitimateInterests.set(range(2, 1400));
  } },
  { name: 'range consents, bitfield li', build: (m) => {
    m.purposeConsents.set([1, 2, 3, 4]); m.purposeLegitimateInterests.set([7, 9]);
    m.vendorConsents.set([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 1000, 1001, 1002, 1003, 1004, 1005, 1006]);
    m.vendorLegitimateInterests.set(randomIds(3, 120, 0.6));
  } },
  { name: 'single vendor high id', build: (m) => {
    m.purposeConsents.set([1]); m.vendorConsents.set([1497]); m.vendorLegitimateInterests.set(range(5, 990));
  } },
  { name: 'publisher restrictions', opts: { isForVendors: true }, build: (m) => {
    m.purposeConsents.set(range(1, 11)); m.purposeLegitimateInterests.set([2, 7, 8, 9, 10, 11]);
    m.vendorConsents.set(randomIds(4, 200, 0.7)); m.vendorLegitimateInterests.set(randomIds(5, 200, 0.5));
    const add = (purpose, type, ids) => ids.forEach((id) => m.publisherRestrictions.add(id, new PurposeRestriction(purpose, type)));
    add(1, RestrictionType.NOT_ALLOWED, [...range(1, 40), 99, 150]);
    add(3, RestrictionType.NOT_ALLOWED, [5, 6]);
    add(2, RestrictionType.REQUIRE_CONSENT, [1, 3, 5, 101, 103]);
    add(7, RestrictionType.REQUIRE_LI, [1, 3, 9, 11]);
    add(7, RestrictionType.REQUIRE_CONSENT, range(21, 45).filter((i) => i % 2));
  } },
  { name: 'disclosed vendors (global scope)', opts: {}, build: (m) => {
    m.purposeConsents.set([1, 9]); m.vendorConsents.set([2, 4, 8]);
    m.vendorsDisclosed.set([...range(1, 50), 300, 301, 302]);
  } },
  { name: 'disclosed vendors bitfield', opts: {}, build: (m) => {
    m.purposeConsents.set([1]); m.vendorConsents.set([3]);
    m.vendorsDisclosed.set(randomIds(6, 90, 0.5));
  } },
  { name: 'publisher TC with custom purposes', opts: { isForVendors: true }, build: (m) => {
    m.purposeConsents.set([1, 2, 7]); m.vendorConsents.set([1, 2, 3]);
    m.publisherConsents.set([1, 3, 5, 10]); m.publisherLegitimateInterests.set([2, 7, 8]);
    m.customPurposes = { 1: { id: 1, name: 'c1', description: '' }, 2: { id: 2, name: 'c2', description: '' }, 5: { id: 5, name: 'c5', description: '' } };
    m.publisherCustomConsents.set([1, 5]); m.publisherCustomLegitimateInterests.set([2]);
    m.supportOOB = true; m.vendorsAllowed.set([1, 2, 3, 40]); m.vendorsDisclosed.set([1, 2, 3, 40, 41]);
  } },
  { name: 'publisher TC without custom purposes', opts: { isForVendors: true }, build: (m) => {
    m.publisherConsents.set([1]); m.vendorConsents.set([5]);
  } },
  { name: 'service specific', build: (m) => {
    m.isServiceSpecific = true; m.useNonStandardTexts = true; m.purposeOneTreatment = true;
    m.purposeConsents.set([2, 3, 4, 7]); m.purposeLegitimateInterests.set([8, 10]);
    m.vendorConsents.set([1, 3, 5, 7, 9]); m.vendorLegitimateInterests.set([1, 3]);
    m.vendorsDisclosed.set(range(1, 20));
    m.publisherConsents.set([1, 2]);
    m.publisherRestrictions.add(3, new PurposeRestriction(2, RestrictionType.REQUIRE_CONSENT));
  } },
  { name: 'service specific, many restrictions, french', lang: 'fr', build: (m) => {
    m.isServiceSpecific = true;
    m.purposeConsents.set(range(1, 11)); m.vendorConsents.set(range(1, 1500)); m.vendorLegitimateInterests.set(randomIds(7, 1500, 0.5));
    for (let p = 1; p <= 11; p++) range(1, 30).filter((i) => (i + p) % 3 === 0).forEach((id) => m.publisherRestrictions.add(id, new PurposeRestriction(p, RestrictionType.NOT_ALLOWED)));
    m.specialFeatureOptins.set([2]);
  } },
];

// bits returns the bit string of one base64url segment.
const bits = (seg) => [...seg].map((c) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(c).toString(2).padStart(6, '0')).join('');
const CORE_FIXED_BITS = 213; // bits before the vendor consents section
const ids = (v) => { const out = []; v.forEach((has, id) => { if (has) out.push(id); }); return out; };
const vendorSet = (v, encBit) => ({ maxId: v.maxId, encoding: encBit === '1' ? 'range' : 'bitfield', ids: ids(v) });

const fixtures = [];
for (const [i, c] of cases.entries()) {
  const m = new TCModel(new GVL(GVL_JSON, c.lang ? { language: c.lang } : undefined));
  m.cmpId = 10 + i; m.cmpVersion = 2 + i; m.consentScreen = i % 64;
  m.isServiceSpecific = false; // the model defaults to true
  m.publisherCountryCode = ['FR', 'DE', 'AA', 'ZZ'][i % 4];
  m.created = new Date(Date.UTC(2025, i % 12, 1 + i, 10, 30, 15, 700));
  m.lastUpdated = new Date(Date.UTC(2026, 0, 2 + i, 8, 0, 0, 100));
  c.build(m);
  const tcString = TCString.encode(m, c.opts);
  const d = TCString.decode(tcString);
  const core = bits(tcString.split('.')[0]);
  const vcEnc = core[CORE_FIXED_BITS + 16];
  const liEnc = core[CORE_FIXED_BITS + d.vendorConsents.bitLength + 16];
  const segs = tcString.split('.').slice(1).map((s) => ({ type: parseInt(bits(s).slice(0, 3), 2), bits: bits(s) }));
  const seg = (t) => segs.find((s) => s.type === t);
  const restrictions = d.publisherRestrictions.getRestrictions().map((pr) => ({
    purposeId: pr.purposeId, restrictionType: pr.restrictionType, vendors: d.publisherRestrictions.getVendors(pr),
  })).sort((a, b) => a.purposeId - b.purposeId || a.restrictionType - b.restrictionType);
  fixtures.push({
    name: c.name,
    tcString,
    version: d.version,
    createdMs: d.created.getTime(),
    lastUpdatedMs: d.lastUpdated.getTime(),
    cmpId: d.cmpId, cmpVersion: d.cmpVersion, consentScreen: d.consentScreen,
    consentLanguage: d.consentLanguage, vendorListVersion: d.vendorListVersion, policyVersion: d.policyVersion,
    isServiceSpecific: d.isServiceSpecific, useNonStandardTexts: d.useNonStandardTexts,
    specialFeatureOptins: ids(d.specialFeatureOptins),
    purposeConsents: ids(d.purposeConsents),
    purposeLegitimateInterests: ids(d.purposeLegitimateInterests),
    purposeOneTreatment: d.purposeOneTreatment,
    publisherCountryCode: d.publisherCountryCode,
    vendorConsents: vendorSet(d.vendorConsents, vcEnc),
    vendorLegitimateInterests: vendorSet(d.vendorLegitimateInterests, liEnc),
    publisherRestrictions: restrictions,
    vendorsDisclosed: seg(1) ? vendorSet(d.vendorsDisclosed, seg(1).bits[3 + 16]) : null,
    vendorsAllowed: seg(2) ? vendorSet(d.vendorsAllowed, seg(2).bits[3 + 16]) : null,
    publisherTC: seg(3) ? {
      consents: ids(d.publisherConsents),
      legitimateInterests: ids(d.publisherLegitimateInterests),
      numCustomPurposes: parseInt(seg(3).bits.slice(51, 57), 2),
      customConsents: ids(d.publisherCustomConsents),
      customLegitimateInterests: ids(d.publisherCustomLegitimateInterests),
    } : null,
  });
}
writeFileSync(new URL('./fixtures.json', import.meta.url), JSON.stringify({
  generator: '@iabtechlabtcf/core ' + JSON.parse((await import('node:fs')).readFileSync(new URL('./node_modules/@iabtechlabtcf/core/package.json', import.meta.url))).version,
  fixtures,
}, null, 1) + '\n');
console.log(`wrote ${fixtures.length} fixtures`);
