// Campaign parameters: Segment's context.campaign from the utm_* query
// parameters of the current page.

const KEYS = ['name', 'source', 'medium', 'term', 'content'];

/**
 * campaign returns {name, source, medium, term, content} read from
 * utm_campaign, utm_source, utm_medium, utm_term and utm_content of a
 * location.search string, or undefined when none is present (so that
 * JSON.stringify leaves the field out). Empty values are skipped.
 * @param {string} search
 * @returns {Object<string,string>|undefined}
 */
export function campaign(search) {
  const p = new URLSearchParams(search);
  let c;
  for (const k of KEYS) {
    const v = p.get('utm_' + (k == 'name' ? 'campaign' : k));
    if (v) (c = c || {})[k] = v;
  }
  return c;
}
