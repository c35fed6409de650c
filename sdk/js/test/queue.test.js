import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { sender, BATCH, MAX_QUEUE, RETRIES } from '../src/queue.js';
import { clock } from './harness.js';

let c, saved;
beforeEach(() => {
  c = clock();
  saved = [globalThis.setTimeout, globalThis.clearTimeout];
  globalThis.setTimeout = c.setTimeout;
  globalThis.clearTimeout = c.clearTimeout;
});
afterEach(() => {
  [globalThis.setTimeout, globalThis.clearTimeout] = saved;
});

// rig returns a sender whose posts are recorded with their time; statuses
// are taken in order (the last repeats); 0 means a network error.
function rig(statuses = [200]) {
  const posts = [];
  let i = 0;
  const s = sender(
    (b) => {
      posts.push({ at: c.now, ids: b.map((e) => e.id) });
      const st = statuses[Math.min(i++, statuses.length - 1)];
      return st ? Promise.resolve(st) : Promise.reject(new TypeError('Failed to fetch'));
    },
    () => true,
  );
  return { s, posts };
}
const ev = (n) => Array.from({ length: n }, (_, i) => ({ id: i }));

test('batches for 500 ms, or flushes at 20 events', async () => {
  const { s, posts } = rig();
  for (const e of ev(3)) s.add(e);
  await c.tick(499);
  assert.equal(posts.length, 0);
  await c.tick(1);
  assert.deepEqual(posts, [{ at: 500, ids: [0, 1, 2] }]);

  for (const e of ev(BATCH + 1)) s.add(e);
  await c.tick(0);
  assert.equal(posts.length, 2, 'flushed at 20 without waiting');
  assert.equal(posts[1].ids.length, BATCH);
  await c.tick(499);
  assert.equal(posts.length, 2, 'the rest is batched again');
  await c.tick(1);
  assert.deepEqual(posts[2].ids, [BATCH]);
});

test('add(e, true) flushes at once', async () => {
  const { s, posts } = rig();
  s.add({ id: 'consent' }, true);
  await c.tick(0);
  assert.deepEqual(posts, [{ at: 0, ids: ['consent'] }]);
});

test('retries and gives up by status', async () => {
  const backoff = [1000, 2000, 4000, 8000, 16000];
  const cases = [
    { name: '200', statuses: [200], posts: 1 },
    { name: '400 not retried', statuses: [400], posts: 1 },
    { name: '413 not retried', statuses: [413], posts: 1 },
    { name: '503 then ok', statuses: [503, 200], posts: 2 },
    { name: '429 twice then ok', statuses: [429, 429, 200], posts: 3 },
    { name: 'network error then ok', statuses: [0, 200], posts: 2 },
    { name: 'always 500: gives up', statuses: [500], posts: 1 + RETRIES },
  ];
  for (const tc of cases) {
    const { s, posts } = rig(tc.statuses);
    s.add({ id: 'x' });
    await c.tick(120000);
    assert.equal(posts.length, tc.posts, tc.name);
    const gaps = posts.slice(1).map((p, i) => p.at - posts[i].at);
    assert.deepEqual(gaps, backoff.slice(0, gaps.length), tc.name + ': backoff');
    for (const p of posts) assert.deepEqual(p.ids, ['x'], tc.name + ': same event each time');
    assert.equal(s.size(), 0, tc.name + ': nothing left');
  }
});

test('one request in flight; the queue is bounded, oldest dropped', async () => {
  const { s, posts } = rig([0, 200]);
  s.add({ id: 'first' });
  await c.tick(500); // fails: 'first' waits 1 s for its retry
  assert.equal(posts.length, 1);
  for (let i = 0; i < MAX_QUEUE + 10; i++) s.add({ id: i });
  assert.equal(s.size(), MAX_QUEUE);
  await c.tick(60000);
  const ids = posts.slice(1).flatMap((p) => p.ids);
  assert.equal(ids.length, MAX_QUEUE);
  assert.deepEqual(ids.slice(0, 2), [10, 11], 'the oldest were dropped');
  assert.equal(ids.at(-1), MAX_QUEUE + 9);
  for (const p of posts) assert.ok(p.ids.length <= BATCH);
});

test('hide hands the queue to the beacon until refused', async () => {
  const cases = [
    { name: 'all accepted', accept: [true, true, true], queued: 45, beacons: [20, 20, 5], left: 0 },
    { name: 'second refused', accept: [true, false], queued: 45, beacons: [20, 20], left: 25 },
    { name: 'nothing queued', accept: [true], queued: 0, beacons: [], left: 0 },
  ];
  for (const tc of cases) {
    const got = [];
    const s = sender(
      () => new Promise(() => {}), // first request hangs: the rest stay queued
      (b) => (got.push(b.length), tc.accept[got.length - 1]),
    );
    s.add({ id: 'inflight' }, true);
    for (const e of ev(tc.queued)) s.add(e);
    s.hide();
    assert.deepEqual(got, tc.beacons, tc.name);
    assert.equal(s.size(), tc.left, tc.name);
  }
});
