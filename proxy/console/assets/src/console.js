// The console's little JavaScript: the theme switch, uPlot charts, the
// live events refresh and the first-run wait. Loaded from /console/assets
// (script-src 'self'); pages work without it, minus those.
import uPlot from 'uplot';

const THEME_KEY = 'vigie-theme';

function applyTheme(t) {
  const root = document.documentElement;
  if (t === 'dark' || t === 'light') root.dataset.theme = t;
  else delete root.dataset.theme;
}

function currentTheme() {
  const t = document.documentElement.dataset.theme;
  if (t) return t;
  return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

try { applyTheme(localStorage.getItem(THEME_KEY)); } catch (e) { /* storage disabled */ }

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

const charts = [];

function drawChart(el) {
  let spec;
  try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
  if (!spec.data || !spec.data[0] || spec.data[0].length === 0) return;
  el.textContent = '';
  const colors = [cssVar('--accent'), cssVar('--accent2'), cssVar('--accent3'), cssVar('--muted')];
  const bars = el.dataset.kind === 'bars';
  const dashed = spec.dashed || [];
  const series = [{}].concat(spec.labels.map((label, i) => ({
    label,
    stroke: colors[i % colors.length],
    width: 2,
    dash: dashed.includes(i + 1) ? [6, 4] : undefined,
    fill: bars ? colors[i % colors.length] + '99' : undefined,
    paths: bars ? uPlot.paths.bars({ size: [0.6 / spec.labels.length, 40], align: spec.labels.length === 1 ? 0 : (i === 0 ? -1 : 1) }) : undefined,
    points: { show: spec.data[0].length < 3 },
  })));
  const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--grid') }, ticks: { stroke: cssVar('--grid') } };
  const opts = {
    width: Math.max(240, el.clientWidth),
    height: 220,
    series,
    axes: [axis, Object.assign({}, axis, { size: 48 })],
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
  };
  const u = new uPlot(opts, spec.data, el);
  charts.push({ u, el });
}

function drawCharts() {
  charts.splice(0).forEach(({ u }) => u.destroy());
  document.querySelectorAll('[data-chart]').forEach(drawChart);
}

function setupThemeButton() {
  const b = document.getElementById('theme');
  if (!b) return;
  b.hidden = false;
  b.addEventListener('click', () => {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    applyTheme(next);
    try { localStorage.setItem(THEME_KEY, next); } catch (e) { /* storage disabled */ }
    drawCharts();
  });
}

// The live events table refreshes itself every few seconds.
function setupLive() {
  const rows = document.getElementById('live-rows');
  if (!rows) return;
  const u = new URL(location.href);
  u.searchParams.set('partial', '1');
  const tick = async () => {
    if (document.hidden) return;
    try {
      const r = await fetch(u, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
      if (r.ok) rows.innerHTML = await r.text();
    } catch (e) { /* try again next tick */ }
  };
  setInterval(tick, 3000);
}

// A site with no event yet waits for its first one.
function setupFirstRun() {
  const box = document.getElementById('first-run');
  if (!box || !box.dataset.poll) return;
  const show = (ev) => {
    box.classList.add('received');
    const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text || ''; };
    set('first-type', ev.type);
    set('first-what', ev.what);
    set('first-mode', ev.mode);
    set('first-reason', ev.reason);
    set('first-at', ev.at);
    const w = document.getElementById('waiting');
    if (w) w.hidden = true;
    const g = document.getElementById('got-first');
    if (g) g.hidden = false;
  };
  const tick = async () => {
    try {
      const r = await fetch(box.dataset.poll, { credentials: 'same-origin' });
      if (r.ok) {
        const j = await r.json();
        if (j.received) { show(j.event); return; }
      }
    } catch (e) { /* try again */ }
    setTimeout(tick, 1500);
  };
  tick();
}

// Copy buttons next to the snippets.
function setupCopy() {
  document.querySelectorAll('button[data-copy]').forEach((b) => {
    b.hidden = false;
    b.addEventListener('click', async () => {
      const src = document.getElementById(b.dataset.copy);
      try { await navigator.clipboard.writeText(src.textContent); b.textContent = 'Copied'; } catch (e) { b.textContent = 'Select and copy'; }
    });
  });
}

document.addEventListener('DOMContentLoaded', () => {
  setupThemeButton();
  drawCharts();
  setupLive();
  setupFirstRun();
  setupCopy();
  if (window.matchMedia) window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', drawCharts);
  let t;
  window.addEventListener('resize', () => { clearTimeout(t); t = setTimeout(drawCharts, 150); });
});
