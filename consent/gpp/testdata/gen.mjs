// gen.mjs encodes GPP strings with the IAB reference implementation
// (@iabgpp/cmpapi) and writes fixtures.json: each string with the section
// ids, the US opt-out fields and the TCF EU v2 purposes/vendors the
// reference decoder reads back. The Go test (consent/gpp) compares them.
//
//   cd consent/gpp/testdata && npm ci && node gen.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { GppModel } from '@iabgpp/cmpapi';

// US sections read by consent/gpp and their opt-out fields (absent fields
// do not exist in that section).
const US = { usnat: 7, usca: 8, usva: 9, usco: 10, usut: 11, usct: 12 };
const HAS = {
  usnat: ['SaleOptOut', 'SharingOptOut', 'TargetedAdvertisingOptOut'],
  usca: ['SaleOptOut', 'SharingOptOut'],
  usva: ['SaleOptOut', 'TargetedAdvertisingOptOut'],
  usco: ['SaleOptOut', 'TargetedAdvertisingOptOut'],
  usut: ['SaleOptOut', 'TargetedAdvertisingOptOut'],
  usct: ['SaleOptOut', 'TargetedAdvertisingOptOut'],
};
const GPC = new Set(['usnat', 'usca', 'usco', 'usct']);

// Each case sets fields: [section, field, value]. Opt-out values are
// 0 (not applicable), 1 (opted out), 2 (did not opt out).
const cases = [
  { name: 'usnat opted out of everything', set: [['usnat', 'SaleOptOut', 1], ['usnat', 'SharingOptOut', 1], ['usnat', 'TargetedAdvertisingOptOut', 1]] },
  { name: 'usnat did not opt out', set: [['usnat', 'SaleOptOut', 2], ['usnat', 'SharingOptOut', 2], ['usnat', 'TargetedAdvertisingOptOut', 2], ['usnat', 'SaleOptOutNotice', 1]] },
  { name: 'usnat sharing only with gpc', set: [['usnat', 'SharingOptOut', 1], ['usnat', 'GpcSegmentIncluded', true], ['usnat', 'Gpc', true]] },
  { name: 'usnat gpc segment false', set: [['usnat', 'TargetedAdvertisingOptOut', 1], ['usnat', 'GpcSegmentIncluded', true], ['usnat', 'Gpc', false]] },
  { name: 'usca sale opt out', set: [['usca', 'SaleOptOut', 1], ['usca', 'SharingOptOut', 2]] },
  { name: 'usca sharing opt out gpc', set: [['usca', 'SharingOptOut', 1], ['usca', 'GpcSegmentIncluded', true], ['usca', 'Gpc', true]] },
  { name: 'usva targeted advertising', set: [['usva', 'TargetedAdvertisingOptOut', 1], ['usva', 'SaleOptOut', 2]] },
  { name: 'usco sale with gpc', set: [['usco', 'SaleOptOut', 1], ['usco', 'GpcSegmentIncluded', true], ['usco', 'Gpc', true]] },
  { name: 'usut targeted advertising', set: [['usut', 'TargetedAdvertisingOptOut', 1], ['usut', 'SensitiveDataProcessingOptOutNotice', 1]] },
  { name: 'usct sale', set: [['usct', 'SaleOptOut', 1], ['usct', 'TargetedAdvertisingOptOut', 2]] },
  { name: 'tcf only', set: [['tcfeuv2', 'PurposeConsents', [true, false, true, true, false, false, true, true, true, true, false]], ['tcfeuv2', 'VendorConsents', [1, 5, 755]], ['tcfeuv2', 'CmpId', 31], ['tcfeuv2', 'VendorListVersion', 99]] },
  { name: 'tcf and usnat and a section we skip', set: [
    ['tcfeuv2', 'PurposeConsents', [true]], ['tcfeuv2', 'VendorConsents', [3]], ['tcfeuv2', 'VendorLegitimateInterests', [3, 4]],
    ['usnat', 'SaleOptOut', 2], ['usfl', 'SaleOptOut', 1], ['usca', 'SaleOptOut', 1]] },
  { name: 'several states', set: [['usva', 'SaleOptOut', 2], ['usco', 'TargetedAdvertisingOptOut', 1], ['usut', 'SaleOptOut', 1], ['usct', 'TargetedAdvertisingOptOut', 2]] },
  { name: 'uspv1 only (skipped)', set: [['uspv1', 'Notice', 'Y'], ['uspv1', 'OptOutSale', 'Y']] },
];

const fixtures = [];
for (const c of cases) {
  const m = new GppModel();
  for (const [sec, field, value] of c.set) m.setFieldValue(sec, field, value);
  const gpp = m.encode();
  const d = new GppModel(gpp);
  const sections = d.getSectionIds();
  const us = [];
  for (const [name, id] of Object.entries(US)) {
    if (!d.hasSection(name)) continue;
    const f = (k) => (HAS[name].includes(k) ? d.getFieldValue(name, k) === 1 : false);
    us.push({
      section: id,
      saleOptOut: f('SaleOptOut'), sharingOptOut: f('SharingOptOut'), targetedAdvertisingOptOut: f('TargetedAdvertisingOptOut'),
      gpc: GPC.has(name) && d.getFieldValue(name, 'GpcSegmentIncluded') === true && d.getFieldValue(name, 'Gpc') === true,
    });
  }
  us.sort((a, b) => a.section - b.section);
  let tcf = null;
  if (d.hasSection('tcfeuv2')) {
    const bools = (v) => v.flatMap((b, i) => (b ? [i + 1] : []));
    tcf = {
      purposeConsents: bools(d.getFieldValue('tcfeuv2', 'PurposeConsents')),
      vendorConsents: d.getFieldValue('tcfeuv2', 'VendorConsents'),
      vendorLegitimateInterests: d.getFieldValue('tcfeuv2', 'VendorLegitimateInterests'),
      cmpId: d.getFieldValue('tcfeuv2', 'CmpId'),
    };
  }
  fixtures.push({ name: c.name, gpp, sections, us, tcf });
}
const version = JSON.parse(readFileSync(new URL('./node_modules/@iabgpp/cmpapi/package.json', import.meta.url))).version;
writeFileSync(new URL('./fixtures.json', import.meta.url), JSON.stringify({ generator: '@iabgpp/cmpapi ' + version, fixtures }, null, 1) + '\n');
console.log(`wrote ${fixtures.length} fixtures`);
