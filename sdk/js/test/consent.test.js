import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tcf, gpp, gcm, gcmState } from '../src/consent.js';

test('tcf maps tcData once the CMP has a decision', () => {
  const cases = [
    { name: 'undefined', in: undefined, want: null },
    { name: 'cmpuishown', in: { eventStatus: 'cmpuishown', tcString: 'CPx', gdprApplies: true }, want: null },
    { name: 'tcloaded', in: { eventStatus: 'tcloaded', tcString: 'CPx', gdprApplies: true }, want: { tcf: 'CPx', gdprApplies: true } },
    {
      name: 'useractioncomplete',
      in: { eventStatus: 'useractioncomplete', tcString: 'CPy', gdprApplies: true, purpose: { consents: { 1: true } } },
      want: { tcf: 'CPy', gdprApplies: true },
    },
    { name: 'gdpr does not apply', in: { eventStatus: 'tcloaded', tcString: '', gdprApplies: false }, want: { tcf: undefined, gdprApplies: false } },
  ];
  for (const c of cases) assert.deepEqual(tcf(c.in), c.want, c.name);
});

test('gpp maps events and pings', () => {
  const ready = { gppString: 'DBABM~CPx', applicableSections: [2], signalStatus: 'ready' };
  const cases = [
    { name: 'undefined', in: undefined, want: null },
    { name: '1.1 event ready', in: { eventName: 'signalStatus', pingData: ready }, want: { gpp: 'DBABM~CPx', gppSid: [2] } },
    { name: '1.1 event not ready', in: { eventName: 'listenerRegistered', pingData: { ...ready, signalStatus: 'not ready' } }, want: null },
    { name: '1.1 ping', in: ready, want: { gpp: 'DBABM~CPx', gppSid: [2] } },
    { name: '1.0 ping (no signalStatus)', in: { gppString: 'DBAA', applicableSections: [-1] }, want: { gpp: 'DBAA', gppSid: [-1] } },
    { name: 'no string yet', in: { pingData: { cmpStatus: 'loading' } }, want: null },
  ];
  for (const c of cases) assert.deepEqual(gpp(c.in), c.want, c.name);
});

function args() {
  return arguments; // what gtag() pushes
}

test('gcm reads consent commands from dataLayer entries', () => {
  const cases = [
    {
      name: 'default then update (Arguments)',
      entries: [
        args('consent', 'default', { ad_storage: 'denied', analytics_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied', wait_for_update: 500 }),
        args('consent', 'update', { analytics_storage: 'granted' }),
      ],
      hits: [true, true],
      want: { ad_storage: 'denied', analytics_storage: 'granted', ad_user_data: 'denied', ad_personalization: 'denied' },
    },
    {
      name: 'arrays work too; an update beats a later default',
      entries: [['consent', 'update', { ad_storage: 'granted' }], ['consent', 'default', { ad_storage: 'denied', analytics_storage: 'denied' }]],
      hits: [true, true],
      want: { ad_storage: 'granted', analytics_storage: 'denied' },
    },
    {
      name: 'regional defaults are ignored',
      entries: [args('consent', 'default', { ad_storage: 'denied', region: ['FR'] }), args('consent', 'default', { ad_storage: 'granted' })],
      hits: [false, true],
      want: { ad_storage: 'granted' },
    },
    {
      name: 'other entries and values are ignored',
      entries: [
        { event: 'gtm.js' },
        args('js', new Date(0)),
        args('config', 'G-1'),
        args('consent', 'update', { analytics_storage: 'yes', security_storage: 'granted' }),
        args('consent', 'revoke', { ad_storage: 'granted' }),
        args('consent', 'update'),
        'consent',
        null,
      ],
      hits: [false, false, false, false, false, false, false, false],
      want: {},
    },
  ];
  for (const c of cases) {
    const s = { d: {}, u: {} };
    assert.deepEqual(c.entries.map((e) => gcm(s, e)), c.hits, c.name);
    assert.deepEqual(gcmState(s), c.want, c.name);
  }
});

test('mappers never throw on odd input (randomized)', () => {
  const atoms = [undefined, null, 0, 1, '', 'consent', 'default', 'update', 'granted', 'denied', 'tcloaded', 'useractioncomplete', 'ready', 'not ready', true, false, [], {}, NaN];
  let seed = 42;
  const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
  const value = (depth) => {
    if (depth > 2 || rnd(3) == 0) return atoms[rnd(atoms.length)];
    if (rnd(2)) return Array.from({ length: rnd(4) }, () => value(depth + 1));
    const keys = ['eventStatus', 'tcString', 'gdprApplies', 'pingData', 'gppString', 'applicableSections', 'signalStatus', 'ad_storage', 'analytics_storage', 'region', '0', '1', '2'];
    const o = {};
    for (let i = rnd(5); i > 0; i--) o[keys[rnd(keys.length)]] = value(depth + 1);
    return o;
  };
  const s = { d: {}, u: {} };
  for (let i = 0; i < 5000; i++) {
    const v = value(0);
    tcf(v);
    gpp(v);
    gcm(s, v);
  }
  for (const m of [s.d, s.u]) for (const k in m) assert.ok(m[k] == 'granted' || m[k] == 'denied', 'only valid values kept');
});
