// Consent signals of the web, mapped to the fields of context.consent that the
// server reads. Pure functions: the snippet wires them to the page.

/**
 * tcf maps the tcData given by an IAB TCF v2.2 CMP to __tcfapi
 * ('addEventListener', 2, cb) to {tcf, gdprApplies}, or null while the CMP
 * has no decision yet (eventStatus other than tcloaded/useractioncomplete).
 * The server decodes the string. An empty string is left out.
 * @returns {{tcf?: string, gdprApplies?: boolean}|null}
 */
export const tcf = (t) =>
  t && (t.eventStatus == 'tcloaded' || t.eventStatus == 'useractioncomplete')
    ? { tcf: t.tcString || undefined, gdprApplies: t.gdprApplies }
    : null;

/**
 * gpp maps an IAB GPP event (1.1: {eventName, pingData}) or ping object (1.0
 * and 1.1) to {gpp, gppSid}, or null while the CMP is not ready.
 * @returns {{gpp: string, gppSid: number[]}|null}
 */
export const gpp = (g) => {
  const p = g && (g.pingData || g);
  return p && typeof p.gppString == 'string' && p.signalStatus != 'not ready'
    ? { gpp: p.gppString, gppSid: p.applicableSections }
    : null;
};

const GCM = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];

/**
 * gcm applies one dataLayer entry to a Google Consent Mode v2 state
 * {d: defaults, u: updates} and reports whether it was a consent command
 * that set something. Entries are what gtag() pushes (an Arguments object)
 * or an array: ['consent', 'default'|'update', {ad_storage: 'granted', …}].
 * Only "granted"/"denied" values of the four v2 signals are kept. A
 * 'default' limited to some regions ({region: [...]}) is ignored: the
 * snippet does not know the visitor's region.
 * @returns {boolean}
 */
export function gcm(s, e) {
  const o = e && e[0] == 'consent' && e[2];
  const into = o && (e[1] == 'update' ? s.u : e[1] == 'default' && !o.region && s.d);
  let hit = false;
  if (into) {
    for (const k of GCM) {
      const v = o[k];
      if (v == 'granted' || v == 'denied') (into[k] = v), (hit = true);
    }
  }
  return hit;
}

/**
 * gcmState returns the effective Consent Mode signals: updates win over
 * defaults whatever their order.
 */
export const gcmState = (s) => Object.assign({}, s.d, s.u);
