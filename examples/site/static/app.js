// The demo site's own script: a consent banner wired to vigie('consent'),
// a few tracked actions, a newsletter form using identify, and a
// single-page-app section. The site (not Vigie) remembers that the visitor
// answered the banner, in localStorage, and only after an answer.
(function () {
  var KEY = 'vigie-demo-consent';
  var $ = function (id) { return document.getElementById(id); };
  var banner = $('consent-banner');

  function choose(c) {
    vigie('consent', c);
    try { localStorage.setItem(KEY, JSON.stringify(c)); } catch (e) {}
    banner.hidden = true;
  }
  var saved = null;
  try { saved = localStorage.getItem(KEY); } catch (e) {}
  if (saved) banner.hidden = true;
  // Vigie's consent lasts 13 months from the choice (its cookie is never
  // extended). When Vigie holds no consent any more for a visitor who had
  // granted something, ask again. (A refusal is the site's to remember:
  // Vigie keeps no cookie for it.)
  vigie('consentStatus', function (s) {
    if (saved && /true/.test(saved) && (s.status === 'expired' || s.status === 'needed')) {
      try { localStorage.removeItem(KEY); } catch (e) {}
      saved = null;
      banner.hidden = false;
    }
  });

  $('accept-all').onclick = function () { choose({ analytics: true, personalization: true, marketing: true }); };
  $('reject-all').onclick = function () { choose({ analytics: false, personalization: false, marketing: false }); };
  $('save-choice').onclick = function () {
    choose({
      analytics: $('c-analytics').checked,
      personalization: $('c-personalization').checked,
      marketing: $('c-marketing').checked
    });
  };

  var buy = $('buy');
  if (buy) buy.onclick = function () { vigie('track', 'Product Added', { plan: 'pro', price: 12 }); };
  var demo = $('demo-request');
  if (demo) demo.onclick = function () {
    vigie('track', 'Demo Requested', { plan: 'team' });
    $('demo-requested').hidden = false;
  };

  var form = $('newsletter');
  if (form) form.onsubmit = function (e) {
    e.preventDefault();
    // Personal traits go to Vigie's encrypted vault (with consent), never
    // to its event store.
    vigie('identify', null, { email: $('email').value, firstName: $('firstName').value });
    vigie('track', 'Newsletter Subscribed');
    form.hidden = true;
    $('subscribed').hidden = false;
  };

  // Single-page-app navigation: the snippet notices history.pushState.
  var links = document.querySelectorAll('[data-spa]');
  for (var i = 0; i < links.length; i++) {
    links[i].onclick = function (e) {
      e.preventDefault();
      var chapter = this.getAttribute('data-spa');
      history.pushState({}, '', 'docs.html?chapter=' + chapter);
      $('doc').textContent = 'Chapter: ' + chapter;
    };
  }
})();
