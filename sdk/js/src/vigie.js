// Vigie browser snippet. Install (see README.md):
//
//   <script>window.vigie=window.vigie||function(){(vigie.q=vigie.q||[]).push(arguments)};vigie('page');</script>
//   <script async src="/s.js" data-write-key="demo"></script>
//
// It replays the calls queued by the stub, then replaces window.vigie. It
// never reads or writes cookies, localStorage or sessionStorage and never
// makes up an identifier: the server sets its own HttpOnly cookie once
// analytics consent is given, for a fixed lifetime from the choice, and
// tells the snippet the consent status, which banners read with
// vigie('consentStatus', fn).

import { campaign } from './campaign.js';
import { tcf, gpp, gcm, gcmState } from './consent.js';
import { sender } from './queue.js';

/* global __VERSION__ */
const VERSION = __VERSION__;

((w, d, n, loc, hist) => {
  const stub = w.vigie;
  if (stub && stub.v) return; // loaded twice

  const me = d.currentScript || d.querySelector('script[data-write-key]');
  const attr = (k) => me && me.getAttribute('data-' + k);
  const hashMode = attr('hash') == 'true';
  // Endpoint base: data-host, else the directory of this script's URL.
  const url = (attr('host') || (me && me.src ? new URL('.', me.src).href : '/')).replace(/\/?$/, '/v1/b');
  const writeKey = attr('write-key');

  const body = (batch) => JSON.stringify({ writeKey, sentAt: new Date().toISOString(), batch });

  // Consent status as Vigie holds it (the Vigie-Consent header of each
  // answer): granted (until expires), denied, expired or needed. Banners
  // listen with vigie('consentStatus', fn) and ask again on expired/needed.
  let cs, ch;
  const ls = [];
  const status = (h) => {
    if (!h || h == ch) return;
    ch = h;
    const e = /expires=([^;]+)/.exec(h);
    cs = { status: h.split(';')[0].trim(), expires: e ? new Date(e[1].trim()) : undefined };
    ls.forEach((f) => f(cs));
  };
  const s = sender(
    (batch) => {
      const b = body(batch);
      return fetch(url, {
        method: 'POST',
        keepalive: b.length < 6e4, // keepalive bodies are capped at 64 KB
        credentials: 'include',
        headers: { 'Content-Type': 'text/plain' }, // a simple request: no preflight
        body: b,
      }).then((r) => {
        try {
          status(r.headers.get('Vigie-Consent'));
        } catch (e) {
          // a status we cannot read changes nothing
        }
        return r.status;
      });
    },
    (batch) => n.sendBeacon && n.sendBeacon(url, body(batch)),
  );

  // Consent: mine (vigie('consent')) wins over the signals of the page.
  const mine = {};
  const sig = {};
  if (n.globalPrivacyControl === true) sig.gpc = true;
  if (n.doNotTrack == '1') sig.dnt = true;

  const href = () => (hashMode ? loc.href : loc.href.replace(/#.*/, ''));
  const key = () => loc.pathname + loc.search + (hashMode ? loc.hash : '');
  let ref = d.referrer;
  let here; // URL of the last page event
  let last; // path+search(+hash) of the last page event

  const send = (o, now) => {
    o.messageId = Array.from(w.crypto.getRandomValues(new Uint8Array(16)), (x) => (x + 256).toString(16).slice(1)).join('');
    o.timestamp = new Date().toISOString();
    o.context = {
      page: { path: loc.pathname, url: href(), referrer: ref, title: d.title, search: loc.search },
      campaign: campaign(loc.search),
      locale: n.language,
      library: { name: 'vigie.js', version: VERSION },
      consent: Object.assign({}, sig, mine),
    };
    s.add(o, now);
  };
  const updated = () => send({ type: 'track', event: 'Consent Updated', properties: {} }, 1);

  // Signals from consent platforms: one "Consent Updated" per burst of user actions.
  let pending = 0;
  const changed = () => {
    pending = pending || setTimeout(() => ((pending = 0), updated()));
  };

  let tcfOn, gppOn;
  const hook = () => {
    if (!tcfOn && typeof w.__tcfapi == 'function') {
      tcfOn = 1;
      w.__tcfapi('addEventListener', 2, (t, ok) => {
        const c = ok && tcf(t);
        if (c) {
          Object.assign(sig, c);
          if (t.eventStatus == 'useractioncomplete') changed();
        }
      });
    }
    if (!gppOn && typeof w.__gpp == 'function') {
      gppOn = 1;
      const f = (g, ok) => {
        const c = ok !== false && gpp(g);
        if (c) {
          Object.assign(sig, c);
          if (g.eventName == 'sectionChange') changed();
        }
      };
      w.__gpp('addEventListener', f);
      const p = w.__gpp('ping', f); // GPP 1.0 answers ping synchronously
      if (p) f(p);
    }
  };
  hook();
  w.addEventListener('load', hook); // a CMP stub that came after us

  // Google Consent Mode v2: gtag('consent', …) calls in dataLayer, now and later.
  const dl = (w.dataLayer = w.dataLayer || []);
  if (Array.isArray(dl)) {
    const g = { d: {}, u: {} };
    const take = (e) => gcm(g, e) && (sig.googleConsentMode = gcmState(g));
    dl.forEach(take);
    const push = dl.push;
    dl.push = function () {
      const r = push.apply(this, arguments);
      for (const e of arguments) if (take(e) && e[1] == 'update') changed();
      return r;
    };
  }

  const api = function (cmd, a, b) {
    try {
      if (a == null || (typeof a == 'object' && cmd != 'consent')) (b = b || a || undefined), (a = undefined);
      if (cmd == 'page') {
        if (here && here != href()) ref = here;
        here = href();
        last = key();
        send({ type: 'page', name: a, properties: b || {} });
      } else if (cmd == 'track') send({ type: 'track', event: a, properties: b || {} });
      else if (cmd == 'identify') send({ type: 'identify', userId: a, traits: b || {} });
      else if (cmd == 'consent') {
        Object.assign(mine, a);
        clearTimeout(pending);
        pending = 0;
        updated();
      } else if (cmd == 'consentStatus') {
        ls.push(a);
        if (cs) a(cs);
      } else if (cmd == 'ready') a();
    } catch (e) {
      // never break the page
    }
  };
  api.v = VERSION;
  w.vigie = api;
  ((stub && stub.q) || []).forEach((args) => api.apply(null, args));

  // Single-page apps: a page event when path+search (+hash) changes after
  // the first page event. Deferred a tick so the router can set the title
  // and so a vigie('page') called right after pushState is not doubled.
  const nav = () => setTimeout(() => last && last != key() && api('page'));
  if (attr('spa') != 'false') {
    for (const m of ['pushState', 'replaceState']) {
      const o = hist[m];
      hist[m] = function () {
        const r = o.apply(this, arguments);
        nav();
        return r;
      };
    }
    w.addEventListener('popstate', nav);
    if (hashMode) w.addEventListener('hashchange', nav);
  }

  // Leaving or hiding the page: hand what is queued to sendBeacon.
  const bye = () => s.hide();
  w.addEventListener('pagehide', bye);
  d.addEventListener('visibilitychange', () => d.visibilityState == 'hidden' && bye());
})(window, document, navigator, location, history);
