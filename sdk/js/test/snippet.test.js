// The built dist/s.js in a fake page: what it sends, where, and what it never touches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { page, STUB } from './harness.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test('replays the stub queue and sends a Segment batch', async () => {
  const p = page({ before: STUB + "vigie('track','Added',{sku:'A1'});vigie('identify','user-42',{plan:'pro'});" });
  assert.equal(p.sent.length, 0, 'batched, not sent at once');
  await p.clock.tick(500);
  assert.equal(p.sent.length, 1);
  const { url, opts, body } = p.sent[0];
  assert.equal(url, 'https://shop.example/t/v1/b');
  assert.equal(opts.method, 'POST');
  assert.equal(opts.keepalive, true);
  assert.equal(opts.credentials, 'include');
  assert.deepEqual(opts.headers, { 'Content-Type': 'text/plain' });
  assert.equal(body.writeKey, 'demo');
  assert.match(body.sentAt, ISO);
  assert.deepEqual(
    body.batch.map((e) => [e.type, e.name ?? e.event ?? e.userId, e.properties ?? e.traits]),
    [
      ['page', undefined, {}],
      ['track', 'Added', { sku: 'A1' }],
      ['identify', 'user-42', { plan: 'pro' }],
    ],
  );
  const ids = new Set();
  for (const e of body.batch) {
    assert.match(e.messageId, /^[0-9a-f]{32}$/);
    ids.add(e.messageId);
    assert.match(e.timestamp, ISO);
    assert.equal(e.anonymousId, undefined, 'never an anonymousId');
    assert.deepEqual(e.context.page, {
      path: '/products',
      url: 'https://shop.example/products?utm_source=news&utm_campaign=spring', // hash stripped
      referrer: 'https://search.example/?q=x',
      title: 'Products',
      search: '?utm_source=news&utm_campaign=spring',
    });
    assert.deepEqual(e.context.campaign, { name: 'spring', source: 'news' });
    assert.equal(e.context.locale, 'fr-FR');
    assert.equal(e.context.library.name, 'vigie.js');
    assert.match(e.context.library.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual(e.context.consent, {});
  }
  assert.equal(ids.size, 3, 'messageIds are unique');
  assert.equal(body.batch[1].userId, undefined, 'identify does not stick to later events');
  assert.equal(p.sb.vigie.v, body.batch[0].context.library.version);
  assert.deepEqual(p.touched, [], 'no cookie or storage access');
});

test('endpoint from the script src or data-host', async () => {
  const cases = [
    { src: 'https://shop.example/t/s.js', attrs: {}, want: 'https://shop.example/t/v1/b' },
    { src: 'https://shop.example/s.js?v=3', attrs: {}, want: 'https://shop.example/v1/b' },
    { src: 'https://shop.example/t/s.js', attrs: { host: 'https://track.example/x' }, want: 'https://track.example/x/v1/b' },
    { src: 'https://shop.example/t/s.js', attrs: { host: 'https://track.example/' }, want: 'https://track.example/v1/b' },
  ];
  for (const c of cases) {
    const p = page({ src: c.src, attrs: { 'write-key': 'k', ...c.attrs } });
    await p.clock.tick(500);
    assert.equal(p.sent[0].url, c.want, JSON.stringify(c));
  }
});

test('page and identify argument forms', async () => {
  const cases = [
    { call: "vigie('page','Home',{a:1})", want: { type: 'page', name: 'Home', properties: { a: 1 } } },
    { call: "vigie('page',{a:1})", want: { type: 'page', properties: { a: 1 } } },
    { call: "vigie('identify',{email:'x@example.com'})", want: { type: 'identify', traits: { email: 'x@example.com' } } },
    { call: "vigie('identify',null,{email:'x@example.com'})", want: { type: 'identify', traits: { email: 'x@example.com' } } },
    { call: "vigie('page',null,{a:1})", want: { type: 'page', properties: { a: 1 } } },
    { call: "vigie('track','Clicked')", want: { type: 'track', event: 'Clicked', properties: {} } },
    { call: "vigie('nonsense',1,2);vigie('ready',function(){throw 1});", want: undefined },
  ];
  for (const c of cases) {
    const p = page({ before: null });
    p.run(c.call);
    await p.clock.tick(500);
    const e = p.events()[0];
    const got = e && { type: e.type, name: e.name, event: e.event, properties: e.properties, traits: e.traits };
    if (e) for (const k of ['name', 'event', 'userId']) assert.ok(!(k in e) || e[k] !== null, c.call + ': no null ' + k);
    for (const k in got) if (got[k] === undefined) delete got[k];
    assert.deepEqual(got, c.want, c.call);
  }
});

test('ready callbacks run', () => {
  const p = page({ before: STUB + 'window.r=0;vigie("ready",function(){window.r++})' });
  p.run('vigie("ready",function(){window.r++})');
  assert.equal(p.sb.r, 2);
});

test('loaded twice: the second copy does nothing', async () => {
  const p = page();
  const api = p.sb.vigie;
  p.run(p.script);
  assert.equal(p.sb.vigie, api);
  p.run("history.pushState({},'','/cart')");
  await p.clock.tick(500);
  assert.deepEqual(p.events().map((e) => e.context.page.path), ['/products', '/cart'], 'history patched once');
  p.run(STUB); // the stub run after load keeps the real function
  assert.equal(p.sb.vigie, api);
});

test('consent: signals merged, explicit wins, Consent Updated sent at once', async () => {
  let tcfCb, gppCb;
  const p = page({
    nav: { globalPrivacyControl: true, doNotTrack: '1' },
    win: {
      __tcfapi: (cmd, v, cb) => cmd == 'addEventListener' && v == 2 && (tcfCb = cb),
      __gpp: (cmd, cb) => {
        if (cmd == 'addEventListener') gppCb = cb;
      },
    },
    before:
      'window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}' +
      "gtag('consent','default',{ad_storage:'denied',analytics_storage:'denied',ad_user_data:'denied',ad_personalization:'denied'});" +
      STUB,
  });
  await p.clock.tick(500);
  assert.deepEqual(p.events()[0].context.consent, {
    gpc: true,
    dnt: true,
    googleConsentMode: { ad_storage: 'denied', analytics_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied' },
  });

  // A CMP: TCF loaded (no event), GPP ready (no event), then the user acts.
  tcfCb({ eventStatus: 'tcloaded', tcString: 'CPold', gdprApplies: true }, true);
  gppCb({ eventName: 'signalStatus', pingData: { gppString: 'DBABM~CPold', applicableSections: [2], signalStatus: 'ready' } }, true);
  await p.clock.tick(1000);
  assert.equal(p.events().length, 1, 'no event without a user action');
  tcfCb({ eventStatus: 'useractioncomplete', tcString: 'CPnew', gdprApplies: true }, true);
  p.run("gtag('consent','update',{analytics_storage:'granted'})");
  await p.clock.tick(0);
  let evs = p.events();
  assert.equal(evs.length, 2, 'one Consent Updated for the burst');
  assert.equal(evs[1].event, 'Consent Updated');
  assert.deepEqual(evs[1].context.consent, {
    gpc: true,
    dnt: true,
    googleConsentMode: { ad_storage: 'denied', analytics_storage: 'granted', ad_user_data: 'denied', ad_personalization: 'denied' },
    tcf: 'CPnew',
    gdprApplies: true,
    gpp: 'DBABM~CPold',
    gppSid: [2],
  });

  // Explicit consent: sent synchronously (a banner click may navigate away), wins on its keys.
  p.run("vigie('consent',{analytics:true,marketing:false,gpc:false})");
  assert.equal(p.sent.length, 3, 'fetch called in the same tick');
  evs = p.events();
  assert.equal(evs[2].event, 'Consent Updated');
  assert.equal(evs[2].context.consent.analytics, true);
  assert.equal(evs[2].context.consent.marketing, false);
  assert.equal(evs[2].context.consent.gpc, false, 'explicit wins');
  p.run("vigie('consent',{personalization:true})");
  await p.clock.tick(0); // one request in flight at a time
  assert.deepEqual(
    [p.events()[3].context.consent.analytics, p.events()[3].context.consent.personalization],
    [true, true],
    'explicit consent accumulates',
  );
  p.run("vigie('track','Later')");
  await p.clock.tick(500);
  assert.equal(p.events().at(-1).context.consent.tcf, 'CPnew');
  assert.deepEqual(p.touched, []);
});

test('a CMP stub that appears after the snippet is hooked at load', async () => {
  const p = page();
  let cb;
  p.sb.__tcfapi = (cmd, v, f) => (cb = f);
  p.fire('window', 'load');
  assert.equal(typeof cb, 'function');
});

test('SPA navigation sends page events on path or search changes', async () => {
  const cases = [
    { name: 'pushState path', hash: false, nav: "history.pushState({},'','/cart')", pages: 2 },
    { name: 'replaceState search', hash: false, nav: "history.replaceState({},'','/products?page=2')", pages: 2 },
    { name: 'same URL', hash: false, nav: "history.replaceState({},'','/products?utm_source=news&utm_campaign=spring')", pages: 1 },
    { name: 'hash only', hash: false, nav: "history.pushState({},'','#reviews')", pages: 1 },
    { name: 'hash only, data-hash', hash: true, nav: "history.pushState({},'','#reviews')", pages: 2 },
    { name: 'page called by the router too', hash: false, nav: "history.pushState({},'','/cart');vigie('page')", pages: 2 },
  ];
  for (const c of cases) {
    const p = page({ attrs: { 'write-key': 'demo', ...(c.hash ? { hash: 'true' } : {}) } });
    p.run(c.nav);
    await p.clock.tick(500);
    const pages = p.events().filter((e) => e.type == 'page');
    assert.equal(pages.length, c.pages, c.name);
    if (c.pages == 2 && !c.nav.includes("vigie('page')")) {
      assert.equal(pages[1].context.page.url, p.loc.href.replace(c.hash ? /$^/ : /#.*/, ''), c.name);
      assert.equal(pages[1].context.page.referrer, pages[0].context.page.url, c.name + ': referrer is the previous page');
    }
  }
  // popstate
  const p = page();
  p.loc.pathname = '/back';
  p.fire('window', 'popstate');
  await p.clock.tick(500);
  assert.equal(p.events().filter((e) => e.type == 'page').length, 2);
  // data-spa="false"
  const off = page({ attrs: { 'write-key': 'demo', spa: 'false' } });
  off.run("history.pushState({},'','/cart')");
  await off.clock.tick(500);
  assert.equal(off.events().length, 1);
});

test('no page event is made up before the first vigie("page")', async () => {
  const p = page({ before: null });
  p.run("history.pushState({},'','/cart')");
  await p.clock.tick(1000);
  assert.equal(p.sent.length, 0);
});

test('retries from memory, then beacons what is left when the page hides', async () => {
  let up = false;
  const p = page({ status: () => (up ? 200 : 503) });
  await p.clock.tick(500);
  assert.equal(p.sent.length, 1);
  p.run("vigie('track','A');vigie('track','B')");
  await p.clock.tick(1000);
  assert.equal(p.sent.length, 2, 'retried after 1 s');
  assert.deepEqual(p.sent[1].body.batch.map((e) => e.type + (e.event || '')), ['page', 'trackA', 'trackB']);
  assert.equal(p.sent[1].body.batch[0].messageId, p.sent[0].body.batch[0].messageId, 'same messageId on retry');
  p.sb.document.visibilityState = 'hidden';
  p.fire('document', 'visibilitychange');
  assert.equal(p.beacons.length, 1);
  assert.equal(p.beacons[0].url, 'https://shop.example/t/v1/b');
  assert.equal(p.beacons[0].body.batch.length, 3);
  assert.equal(p.beacons[0].body.writeKey, 'demo');
  up = true;
  await p.clock.tick(60000);
  assert.equal(p.sent.length, 2, 'nothing sent twice after the beacon');
  p.fire('window', 'pagehide');
  assert.equal(p.beacons.length, 1, 'nothing left to beacon');
});

test('4xx is not retried', async () => {
  const p = page({ status: () => 400 });
  await p.clock.tick(60000);
  assert.equal(p.sent.length, 1);
});

test('consentStatus tells the banner what Vigie holds, once per change', async () => {
  const answers = ['needed', 'needed', 'granted; expires=2027-12-01T10:00:00Z', 'granted; expires=2027-12-01T10:00:00Z', 'expired'];
  let i = 0;
  const p = page({ consent: () => answers[Math.min(i++, answers.length - 1)] });
  const seen = [];
  p.sb.vigie('consentStatus', (s) => seen.push(s));
  for (let n = 0; n < answers.length; n++) {
    p.sb.vigie('track', 'E' + n);
    await p.clock.tick(500);
  }
  assert.equal(p.sent.length, answers.length);
  assert.deepEqual(
    seen.map((s) => [s.status, s.expires && s.expires.toISOString()]),
    [
      ['needed', undefined],
      ['granted', '2027-12-01T10:00:00.000Z'],
      ['expired', undefined],
    ],
  );
  // A listener added later hears the current status at once.
  const late = [];
  p.sb.vigie('consentStatus', (s) => late.push(s.status));
  assert.deepEqual(late, ['expired']);
  assert.deepEqual(p.touched, [], 'no cookie or storage access');
});

test('an answer without a readable status is no network error', async () => {
  const p = page({ consent: () => null });
  const seen = [];
  p.sb.vigie('consentStatus', (s) => seen.push(s));
  await p.clock.tick(500);
  await p.clock.tick(60000);
  assert.equal(p.sent.length, 1, 'not retried');
  assert.deepEqual(seen, []);
});
