/**
 * Exports of a {@link LoadtestResult}: CSV (the time series plus a total row) and a self-contained
 * HTML report (no external assets: the result is embedded as JSON, inline JS draws inline SVG).
 */
import type { LoadtestResult, Percentiles } from './loadtest.js';

/**
 * The CSV columns, in order (one row per interval, `kind` = interval, then one `total` row).
 * `resent` came last (added after the others: their positions did not move).
 */
export const CSV_COLUMNS = [
  'kind', 'from_ms', 'to_ms', 'rps', 'sent', 'completed', 'dropped', 'errors',
  'corrected_p50_ms', 'corrected_p90_ms', 'corrected_p99_ms', 'corrected_p999_ms', 'corrected_max_ms',
  'raw_p50_ms', 'raw_p90_ms', 'raw_p99_ms', 'raw_p999_ms', 'raw_max_ms', 'resent',
] as const;

function lat(p: Percentiles): number[] {
  return [p.p50, p.p90, p.p99, p.p999, p.max];
}

/**
 * The result as CSV (RFC 4180, `\n` line ends): a header of {@link CSV_COLUMNS}, one `interval`
 * row per time-series interval, and a last `total` row over the whole run. Latencies in ms.
 */
export function loadtestCsv(result: LoadtestResult): string {
  const rows: Array<Array<string | number>> = [CSV_COLUMNS as unknown as string[]];
  for (const r of result.timeline) {
    rows.push(['interval', r.fromMs, r.toMs, r.rps, r.sent, r.completed, r.dropped, r.errors, ...lat(r.corrected), ...lat(r.raw), r.resent]);
  }
  rows.push(['total', 0, result.duration.actualMs, result.throughput.rps, result.requests.total, result.requests.completed,
    result.requests.dropped, result.requests.errors, ...lat(result.latency.corrected), ...lat(result.latency.raw), result.requests.resent]);
  return rows.map((r) => r.join(',')).join('\n') + '\n';
}

/** Escapes text for HTML element content and attribute values. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A self-contained HTML report: a summary table and three SVG plots — latency percentiles over
 * time (corrected p50/p90/p99/max and raw p99), throughput over time, and the latency distribution
 * (percentile spectrum, corrected and raw). The plots are drawn by an inline script from the
 * embedded result; every plotted point is an SVG element carrying `data-series` and `data-value`
 * (and `data-t` or `data-percentile`) so tools (and the tests, through headless Chromium) can
 * read the plotted values back. Without JavaScript the summary is still there (static).
 */
export function loadtestHtml(result: LoadtestResult): string {
  // JSON inside <script>: only "<" can end the element early; \u003c keeps it inert.
  const data = JSON.stringify(result).replace(/</g, '\\u003c');
  const c = result.latency.corrected;
  const r = result.latency.raw;
  const staticRows: Array<[string, string, string]> = [
    ['throughput.rps', 'throughput (responses/s)', String(result.throughput.rps)],
    ['requests.total', 'requests sent', String(result.requests.total)],
    ['requests.resent', 'written again after their connection closed', String(result.requests.resent)],
    ['requests.dropped', 'dropped (open model)', String(result.requests.dropped)],
    ['requests.errors', 'errors', String(result.requests.errors)],
    ['latency.corrected.p50', 'corrected p50 (ms)', String(c.p50)],
    ['latency.corrected.p99', 'corrected p99 (ms)', String(c.p99)],
    ['latency.raw.p99', 'raw p99 (ms)', String(r.p99)],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hotpath loadtest — ${esc(result.url)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
svg { background: #fafafa; border: 1px solid #ddd; }
.axis { stroke: #888; stroke-width: 1; } .grid { stroke: #e4e4e4; stroke-width: 1; }
text { font-size: 11px; fill: #555; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
.note { color: #666; font-size: 12px; }
</style>
</head>
<body>
<h1>hotpath loadtest</h1>
<p>${esc(result.url)} — ${result.model} model, ${result.settings.connections} connections × pipelining ${result.settings.pipelining},
${result.settings.workers} worker thread${result.settings.workers === 1 ? '' : 's'}, ${(result.duration.scheduledMs / 1000).toFixed(1)} s, Node ${esc(result.generator.node)}</p>
<p class="note">Corrected latencies: ${result.latency.correction.method === 'intended-start'
    ? 'measured from each request&#39;s intended start (open model).'
    : result.latency.correction.method === 'expected-interval'
      ? `coordinated-omission corrected with the expected interval ${result.latency.correction.expectedIntervalMs} ms (the mean service time).`
      : 'no correction (raw).'} Raw latencies: from the send.</p>
<h2>Summary</h2>
<table id="summary"><tbody>
${staticRows.map(([k, label, v]) => `<tr><td>${label}</td><td data-key="${k}">${esc(v)}</td></tr>`).join('\n')}
</tbody></table>
<table id="percentiles"><thead><tr><th>latency (ms)</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead><tbody></tbody></table>
<h2>Latency percentiles over time</h2>
<div class="legend" id="legend-latency"></div>
<svg id="latency-over-time" width="960" height="320" role="img" aria-label="latency percentiles over time"></svg>
<h2>Throughput over time</h2>
<svg id="throughput-over-time" width="960" height="240" role="img" aria-label="throughput over time"></svg>
<h2>Latency distribution</h2>
<div class="legend" id="legend-distribution"></div>
<svg id="distribution" width="960" height="320" role="img" aria-label="latency by percentile"></svg>
<p class="note">x: percentile on a log scale of 1/(1 − p) (as HdrHistogram plots it), y: latency in ms.</p>
<script type="application/json" id="hotpath-data">${data}</script>
<script>
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';
  var data = JSON.parse(document.getElementById('hotpath-data').textContent);
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function fmt(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }
  // One plot: series = [{ name, color, dash, points: [{x, y, attrs}] }]; x/y in data units.
  function plot(svg, series, opts) {
    var W = +svg.getAttribute('width'), H = +svg.getAttribute('height');
    var L = 60, R = 16, T = 12, B = 36;
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p.x); ys.push(p.y); }); });
    var x0 = opts.xMin !== undefined ? opts.xMin : Math.min.apply(null, xs.concat([0]));
    var x1 = opts.xMax !== undefined ? opts.xMax : Math.max.apply(null, xs.concat([1]));
    if (x1 <= x0) x1 = x0 + 1;
    var y1 = niceMax(Math.max.apply(null, ys.concat([0])));
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return H - B - y / y1 * (H - T - B); };
    svg.setAttribute('data-y-max', String(y1));
    for (var i = 0; i <= 4; i++) {
      var yv = y1 * i / 4, yy = sy(yv);
      el('line', { x1: L, x2: W - R, y1: yy, y2: yy, 'class': i === 0 ? 'axis' : 'grid' }, svg);
      el('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, svg).textContent = fmt(yv);
    }
    (opts.xTicks || []).forEach(function (t) {
      var xx = sx(t.x);
      el('line', { x1: xx, x2: xx, y1: T, y2: H - B, 'class': 'grid' }, svg);
      el('text', { x: xx, y: H - B + 16, 'text-anchor': 'middle' }, svg).textContent = t.label;
    });
    el('line', { x1: L, x2: L, y1: T, y2: H - B, 'class': 'axis' }, svg);
    el('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, svg).textContent = opts.xLabel;
    el('text', { x: 12, y: T + 8 }, svg).textContent = opts.yLabel;
    series.forEach(function (s) {
      var pts = s.points.map(function (p) { return sx(p.x).toFixed(1) + ',' + sy(p.y).toFixed(1); }).join(' ');
      el('polyline', { points: pts, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dash || 'none', 'data-series': s.name }, svg);
      s.points.forEach(function (p) {
        var a = { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 2.5, fill: s.color, 'data-series': s.name, 'data-value': p.y };
        for (var k in p.attrs) a[k] = p.attrs[k];
        el('circle', a, svg);
      });
    });
  }
  function legend(id, series) {
    var box = document.getElementById(id);
    series.forEach(function (s) {
      var span = document.createElement('span');
      span.innerHTML = '<i style="background:' + s.color + '"></i>';
      span.appendChild(document.createTextNode(s.name));
      box.appendChild(span);
    });
  }
  var tl = data.timeline;
  var tMid = function (r) { return (r.fromMs + r.toMs) / 2000; };
  var timeTicks = [];
  var tEnd = tl.length ? tl[tl.length - 1].toMs / 1000 : 1;
  var tStep = niceMax(tEnd / 6);
  for (var t = 0; t <= tEnd + 1e-9; t += tStep) timeTicks.push({ x: t, label: fmt(t) + ' s' });
  var latSeries = [
    { name: 'corrected.p50', color: '#1f77b4', key: ['corrected', 'p50'] },
    { name: 'corrected.p90', color: '#2ca02c', key: ['corrected', 'p90'] },
    { name: 'corrected.p99', color: '#d62728', key: ['corrected', 'p99'] },
    { name: 'corrected.max', color: '#9467bd', key: ['corrected', 'max'] },
    { name: 'raw.p99', color: '#ff7f0e', key: ['raw', 'p99'], dash: '5,4' },
  ].map(function (s) {
    s.points = tl.map(function (r, i) { return { x: tMid(r), y: r[s.key[0]][s.key[1]], attrs: { 'data-t': r.fromMs, 'data-index': i } }; });
    return s;
  });
  legend('legend-latency', latSeries);
  plot(document.getElementById('latency-over-time'), latSeries, { xMin: 0, xMax: tEnd, xTicks: timeTicks, xLabel: 'time', yLabel: 'ms' });
  var rpsSeries = [{ name: 'rps', color: '#1f77b4', points: tl.map(function (r, i) { return { x: tMid(r), y: r.rps, attrs: { 'data-t': r.fromMs, 'data-index': i } }; }) }];
  plot(document.getElementById('throughput-over-time'), rpsSeries, { xMin: 0, xMax: tEnd, xTicks: timeTicks, xLabel: 'time', yLabel: 'responses/s' });
  // Spectrum: x = log10(1 / (1 - p/100)), capped at the 99.999th (p = 100 would be infinite).
  var px = function (p) { return Math.log10(1 / (1 - Math.min(p, 99.999) / 100)); };
  var spec = data.spectrum;
  var distSeries = [
    { name: 'corrected', color: '#d62728', field: 'correctedMs' },
    { name: 'raw', color: '#ff7f0e', field: 'rawMs', dash: '5,4' },
  ].map(function (s) {
    s.points = spec.filter(function (p) { return p.percentile < 100; }).map(function (p) { return { x: px(p.percentile), y: p[s.field], attrs: { 'data-percentile': p.percentile } }; });
    return s;
  });
  legend('legend-distribution', distSeries);
  plot(document.getElementById('distribution'), distSeries, {
    xMin: 0, xMax: 5, xLabel: 'percentile', yLabel: 'ms',
    xTicks: [0, 90, 99, 99.9, 99.99, 99.999].map(function (p) { return { x: px(p), label: p === 0 ? '0%' : p + '%' }; }),
  });
  var body = document.querySelector('#percentiles tbody');
  [['corrected', data.latency.corrected], ['raw', data.latency.raw]].forEach(function (row) {
    var tr = document.createElement('tr');
    var td = document.createElement('td'); td.textContent = row[0]; tr.appendChild(td);
    ['p50', 'p90', 'p99', 'p999', 'max'].forEach(function (k) {
      var c = document.createElement('td');
      c.setAttribute('data-key', 'latency.' + row[0] + '.' + k);
      c.textContent = String(row[1][k]);
      tr.appendChild(c);
    });
    body.appendChild(tr);
  });
  document.body.setAttribute('data-rendered', 'true');
})();
</script>
</body>
</html>
`;
}

