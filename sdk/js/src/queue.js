// Batching and delivery, independent of the DOM so it can be tested in Node.

/** Most events kept in memory; the oldest are dropped beyond it. */
export const MAX_QUEUE = 100;
/** Most events in one request; reaching it flushes at once. */
export const BATCH = 20;
/** How long an event waits for others before a flush, in ms. */
export const DELAY = 500;
/** Retries of a failing batch before it is dropped (backoff 1s, 2s, 4s…). */
export const RETRIES = 5;
/** Longest backoff between retries, in ms. */
export const MAX_BACKOFF = 30000;

/**
 * sender batches events. post(batch) sends one batch and resolves to the
 * HTTP status; a rejection counts as a network error. Network errors, 429 and
 * 5xx are retried with exponential backoff; other statuses (2xx, 4xx) end the
 * batch. beacon(batch) hands a batch to navigator.sendBeacon when the page is
 * hidden and returns whether the browser accepted it. One request is in
 * flight at a time, so a cookie set by one response is sent with the next.
 * @param {(batch: object[]) => Promise<number>} post
 * @param {(batch: object[]) => boolean} beacon
 */
export function sender(post, beacon) {
  let q = [];
  let timer = 0;
  let busy = false;
  let tries = 0;

  const later = (ms) => {
    if (!timer) timer = setTimeout(flush, ms);
  };

  function flush() {
    clearTimeout(timer);
    timer = 0;
    if (busy || !q.length) return;
    const b = q.splice(0, BATCH);
    busy = true;
    new Promise((r) => r(post(b))) // post runs now: a click may be leaving the page
      .then(null, () => 0)
      .then((s) => {
        busy = false;
        if ((!s || s == 429 || s >= 500) && tries < RETRIES) {
          q = b.concat(q);
          if (q.length > MAX_QUEUE) q.splice(0, q.length - MAX_QUEUE);
          later(Math.min(1000 << tries++, MAX_BACKOFF));
          return;
        }
        tries = 0;
        if (q.length) later(0);
      });
  }

  return {
    /** add queues an event; now flushes at once (consent changes). */
    add(e, now) {
      q.push(e);
      if (q.length > MAX_QUEUE) q.shift();
      if (now || (q.length >= BATCH && !tries)) flush();
      else later(DELAY);
    },
    /** hide hands what is queued to beacon, a batch at a time, until refused. */
    hide() {
      while (q.length && beacon(q.slice(0, BATCH))) q.splice(0, BATCH);
    },
    /** size is the number of queued events (for tests). */
    size: () => q.length,
  };
}
