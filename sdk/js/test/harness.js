// Test helpers: a fake clock and a fake browser page in which the built
// dist/s.js runs (node:vm), recording what it sends and what it touches.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { webcrypto } from 'node:crypto';

const settle = () => new Promise((r) => setImmediate(r));

/** clock is a fake setTimeout/clearTimeout driven by tick(ms). */
export function clock() {
  let now = 0;
  let seq = 0;
  const timers = new Map();
  return {
    setTimeout(fn, ms) {
      timers.set(++seq, { at: now + (Number(ms) || 0), fn });
      return seq;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** tick advances time by ms, running due timers and settling promises. */
    async tick(ms = 0) {
      const end = now + ms;
      for (;;) {
        await settle();
        let next;
        for (const e of timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
      await settle();
    },
    get now() {
      return now;
    },
  };
}

/** The stub of README.md, exactly. */
export const STUB = "window.vigie=window.vigie||function(){(vigie.q=vigie.q||[]).push(arguments)};vigie('page');";

const BUILT = new URL('../dist/s.js', import.meta.url);

/**
 * page makes a fake browser page at url whose <script> has src and the data-*
 * attributes attrs. before runs page code (a string, in the page) ahead of the
 * snippet. status() gives each fetch's HTTP status (default 200), consent()
 * its Vigie-Consent header (default none).
 */
export function page({
  url = 'https://shop.example/products?utm_source=news&utm_campaign=spring#top',
  src = 'https://shop.example/t/s.js',
  attrs = { 'write-key': 'demo' },
  before = STUB,
  nav = {},
  win = {},
  status = () => 200,
  consent = () => null,
  referrer = 'https://search.example/?q=x',
  script = readFileSync(BUILT, 'utf8'),
} = {}) {
  const c = clock();
  const touched = [];
  const sent = []; // {url, opts, body}
  const beacons = []; // {url, body}
  const listeners = { window: {}, document: {} };
  const on = (t) => (type, fn) => (listeners[t][type] = listeners[t][type] || []).push(fn);

  const loc = {};
  const setURL = (u) => {
    const x = new URL(u, loc.href);
    Object.assign(loc, { href: x.href, pathname: x.pathname, search: x.search, hash: x.hash });
  };
  setURL(url);
  const history = {
    pushState(_s, _t, u) {
      setURL(u);
    },
    replaceState(_s, _t, u) {
      setURL(u);
    },
  };
  const forbid = (o, k) =>
    Object.defineProperty(o, k, {
      get() {
        touched.push(k);
        throw new Error(k + ' must not be touched');
      },
      set() {
        touched.push(k);
        throw new Error(k + ' must not be touched');
      },
    });
  const document = {
    currentScript: { src, getAttribute: (k) => (k.startsWith('data-') ? attrs[k.slice(5)] ?? null : null) },
    querySelector: () => null,
    referrer,
    title: 'Products',
    visibilityState: 'visible',
    addEventListener: on('document'),
  };
  forbid(document, 'cookie');
  const navigator = {
    language: 'fr-FR',
    sendBeacon(u, body) {
      beacons.push({ url: u, body: JSON.parse(body) });
      return true;
    },
    ...nav,
  };
  const sb = {
    document,
    navigator,
    location: loc,
    history,
    crypto: webcrypto,
    URL,
    URLSearchParams,
    setTimeout: c.setTimeout,
    clearTimeout: c.clearTimeout,
    addEventListener: on('window'),
    fetch(u, opts) {
      sent.push({ url: u, opts: JSON.parse(JSON.stringify({ ...opts, body: undefined })), body: JSON.parse(opts.body) });
      const s = status();
      const h = consent();
      const headers = { get: (k) => (k.toLowerCase() == 'vigie-consent' ? h : null) };
      return s ? Promise.resolve({ status: s, headers }) : Promise.reject(new TypeError('Failed to fetch'));
    },
    ...win,
  };
  sb.window = sb;
  forbid(sb, 'localStorage');
  forbid(sb, 'sessionStorage');
  vm.createContext(sb);
  const run = (code) => vm.runInContext(code, sb);
  if (before) run(before);
  run(script);
  return {
    run,
    sb,
    script,
    clock: c,
    sent,
    beacons,
    touched,
    loc,
    /** events returns every event sent by fetch, in order. */
    events: () => sent.flatMap((r) => r.body.batch),
    /** fire dispatches an event to the window's or document's listeners. */
    fire(target, type) {
      for (const fn of listeners[target][type] || []) fn({ type });
    },
  };
}
