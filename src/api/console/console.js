// The qsearch search console: one page served by qsearch itself (no CDN, works offline).
// Reads collection, q, k, mode and filter from its URL and writes them back after a search, so
// a result page can be linked. With keys configured it asks for one and keeps it in this
// script's memory only (never in storage, cookies or the URL). All server text is inserted as
// text nodes, never as HTML.
'use strict';
(() => {
  const state = { key: null, info: null, prev: null, spark: [], started: false, collections: [] };
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, { method = 'GET', body, raw = false } = {}) {
    const headers = {};
    if (state.key) headers.Authorization = 'Bearer ' + state.key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (res.status === 401) {
      askKey(state.key ? 'that key was not accepted' : '');
      throw new ApiError(401, 'an API key is needed');
    }
    if (!res.ok) {
      let message = text;
      try { message = JSON.parse(text).error.message; } catch (e) { /* not JSON */ }
      throw new ApiError(res.status, message);
    }
    return raw ? text : JSON.parse(text);
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // ---- key ----------------------------------------------------------------------------------
  function askKey(error) {
    $('key-form').hidden = false;
    $('key-error').textContent = error || '';
    $('key').focus();
  }

  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.key = $('key').value;
    $('key').value = '';
    $('key-form').hidden = true;
    start();
  });

  // ---- URL state ----------------------------------------------------------------------------
  function readUrl() {
    const p = new URLSearchParams(location.search);
    if (p.has('q')) $('q').value = p.get('q');
    if (p.has('k')) $('k').value = p.get('k');
    if (p.has('mode')) $('mode').value = p.get('mode');
    if (p.has('filter')) $('filter').value = p.get('filter');
    return p;
  }

  function writeUrl() {
    const p = new URLSearchParams();
    if ($('collection').value) p.set('collection', $('collection').value);
    if ($('q').value) p.set('q', $('q').value);
    p.set('k', $('k').value);
    if ($('mode').value !== 'dense') p.set('mode', $('mode').value);
    if ($('filter').value.trim()) p.set('filter', $('filter').value.trim());
    history.replaceState(null, '', location.pathname + '?' + p.toString());
  }

  // ---- server info and collections ----------------------------------------------------------
  async function loadInfo() {
    const info = await api('/info');
    state.info = info;
    const m = info.model;
    $('server-info').textContent = m
      ? `${info.version} (${info.commit}) · ${m.id} · dims ${m.dimensions.min}–${m.dimensions.max} · ${m.devices.join(', ')}` +
        (info.reranker ? ` · reranker ${info.reranker.id}` : '')
      : `${info.version} · loading the model…`;
    $('rerank-label').hidden = !info.reranker;
  }

  function jobLine(job) {
    const rate = job.rate >= 1 ? `${Math.round(job.rate)}/s` : '';
    const parts = [`${job.kind}: ${job.done}${job.total !== null ? ' of ' + job.total : ''}`, rate];
    if (job.errors) parts.push(`${job.errors} errors`);
    const line = el('div', { class: 'job', 'data-job': String(job.id), text: parts.filter(Boolean).join(' · ') });
    const bar = el('progress', { max: '1' });
    if (job.total_bytes) bar.value = Math.min(1, job.bytes / job.total_bytes);
    else if (job.total) bar.value = Math.min(1, job.done / job.total);
    else bar.removeAttribute('value');  // indeterminate
    line.append(bar);
    return line;
  }

  async function loadCollections() {
    const { collections } = await api('/collections');
    state.collections = collections;
    const select = $('collection');
    const want = select.value || new URLSearchParams(location.search).get('collection');
    const names = collections.map((c) => c.name);
    if (select.options.length !== names.length || [...select.options].some((o, i) => o.value !== names[i])) {
      select.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
    }
    if (want && names.includes(want)) select.value = want;
    const list = $('collections');
    list.replaceChildren(...collections.map((c) => {
      const li = el('li', { 'data-collection': c.name },
        el('span', { class: 'count', text: c.document_count.toLocaleString('en') }),
        el('span', { class: 'name', text: c.name }),
        el('div', { class: 'muted', text: `${c.index_type}, ${c.dimension} dims, ${c.metric}` }));
      for (const job of c.jobs || []) li.append(jobLine(job));
      if (c.name === select.value) li.classList.add('selected');
      li.addEventListener('click', () => { select.value = c.name; writeUrl(); loadCollections(); });
      return li;
    }));
    if (!collections.length) list.replaceChildren(el('li', { class: 'muted', text: 'no collections yet' }));
  }

  // ---- search -------------------------------------------------------------------------------
  function queryWords(q) {
    return q.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 1);
  }

  // Text with <mark>s: ranges are [start, end) in code points (the API's unit).
  function markedText(text, ranges, words) {
    const cps = Array.from(text);
    let marks = (ranges || []).map((r) => [r.start, r.end]);
    if (!marks.length && words.length) {  // no highlights from the server: mark the query's words
      const lower = cps.map((c) => c.toLowerCase());
      for (const w of words) {
        const wc = Array.from(w);
        for (let i = 0; i + wc.length <= lower.length; ++i) {
          let j = 0;
          while (j < wc.length && lower[i + j] === wc[j]) ++j;
          if (j === wc.length) marks.push([i, i + wc.length]);
        }
      }
    }
    marks = marks.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
    const limit = 700;
    let from = 0;
    if (cps.length > limit && marks.length) from = Math.max(0, marks[0][0] - 150);
    const to = Math.min(cps.length, from + limit);
    const out = el('div', { class: 'text' });
    if (from > 0) out.append('…');
    let pos = from;
    for (const [s, e] of marks) {
      if (e <= pos || s >= to) continue;
      const a = Math.max(s, pos);
      out.append(cps.slice(pos, a).join(''));
      out.append(el('mark', { text: cps.slice(a, Math.min(e, to)).join('') }));
      pos = Math.min(e, to);
    }
    out.append(cps.slice(pos, to).join(''));
    if (to < cps.length) out.append('…');
    return out;
  }

  function renderHit(hit, rank, words) {
    const head = el('div', { class: 'head' },
      el('span', { class: 'rank', text: String(rank) + '.' }),
      el('span', { class: 'id', text: hit.id }),
      el('span', { class: 'score', text: 'score ' + hit.score.toFixed(4) }),
      hit.rerank_score !== undefined ? el('span', { class: 'score rerank', text: 'rerank ' + hit.rerank_score.toFixed(4) }) : null);
    const similar = el('button', { type: 'button', class: 'similar', text: 'similar' });
    similar.addEventListener('click', () => search({ id: hit.id }));
    head.append(similar);
    const li = el('li', { class: 'hit', 'data-id': hit.id }, head);
    if (hit.chunk) li.append(el('div', { class: 'muted', text: `best chunk #${hit.chunk.index} (characters ${hit.chunk.start}–${hit.chunk.end})` }));
    if (typeof hit.text === 'string') {
      const ranges = hit.highlights || (hit.chunk ? [{ start: hit.chunk.start, end: hit.chunk.end }] : []);
      li.append(markedText(hit.text, ranges, hit.chunk ? [] : words));
    }
    const meta = hit.metadata && Object.entries(hit.metadata);
    if (meta && meta.length) {
      li.append(el('div', { class: 'meta' }, ...meta.map(([k, v]) => el('span', { text: `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}` }))));
    }
    return li;
  }

  async function search(by) {
    const collection = $('collection').value;
    if (!collection) { $('status').textContent = 'no collection to search'; return; }
    const body = { k: Number($('k').value) || 10 };
    const q = $('q').value.trim();
    if (by && by.id) body.id = by.id; else if (q) body.query = q; else return;
    if ($('mode').value !== 'dense') body.mode = $('mode').value;
    const filter = $('filter').value.trim();
    if (filter) {
      try { body.filter = JSON.parse(filter); } catch (e) {
        $('status').textContent = 'the filter is not JSON: ' + e.message;
        $('status').className = 'error';
        return;
      }
    }
    if (!$('rerank-label').hidden && $('rerank').checked && body.query) body.rerank = { top_n: Number($('top-n').value) || 50 };
    writeUrl();
    $('status').className = 'muted';
    $('status').textContent = 'searching…';
    try {
      const r = await api(`/collections/${encodeURIComponent(collection)}/search`, { method: 'POST', body });
      const words = body.query ? queryWords(body.query) : [];
      $('results').replaceChildren(...r.results.map((h, i) => renderHit(h, i + 1, words)));
      $('status').textContent = `${r.results.length} result${r.results.length === 1 ? '' : 's'} in ${r.took_ms.toFixed(1)} ms` +
        (body.id ? ` (similar to ${body.id})` : '');
    } catch (e) {
      $('results').replaceChildren();
      $('status').className = 'error';
      $('status').textContent = `${e.status || ''} ${e.message}`;
    }
  }

  $('search-form').addEventListener('submit', (ev) => { ev.preventDefault(); search(); });
  $('collection').addEventListener('change', () => { writeUrl(); loadCollections(); });

  // ---- live QPS and latency from /metrics ---------------------------------------------------
  const SEARCH_ROUTE = '/collections/{name}/search';

  function parseMetrics(text) {
    let requests = 0;
    const buckets = new Map();  // le -> cumulative count, search route
    for (const line of text.split('\n')) {
      if (line.startsWith('qsearch_http_requests_total{') && !line.includes('route="/metrics"')) {
        requests += Number(line.slice(line.lastIndexOf(' ') + 1));
      } else if (line.startsWith('qsearch_http_request_duration_seconds_bucket{') && line.includes(`route="${SEARCH_ROUTE}"`)) {
        const le = line.match(/le="([^"]+)"/)[1];
        buckets.set(le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1)));
      }
    }
    return { t: performance.now() / 1000, requests, buckets };
  }

  // Quantile q of the requests between two histogram snapshots (linear within a bucket).
  function quantile(q, prev, cur) {
    const les = [...cur.buckets.keys()].sort((a, b) => a - b);
    const counts = les.map((le) => cur.buckets.get(le) - (prev.buckets.get(le) || 0));
    const total = counts[counts.length - 1];
    if (!total) return null;
    const rank = q * total;
    let lower = 0, below = 0;
    for (let i = 0; i < les.length; ++i) {
      if (counts[i] >= rank) {
        if (les[i] === Infinity) return lower;
        const inBucket = counts[i] - below;
        return lower + (les[i] - lower) * (inBucket ? (rank - below) / inBucket : 0);
      }
      lower = les[i];
      below = counts[i];
    }
    return null;
  }

  function fmtSeconds(s) {
    if (s === null) return '–';
    return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
  }

  function drawSpark() {
    const svg = $('live-spark');
    const w = 120, h = 24, values = state.spark;
    const max = Math.max(1, ...values);
    const pts = values.map((v, i) => `${(i * w) / 59},${h - 2 - (v / max) * (h - 4)}`).join(' ');
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', pts);
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#2457d6');
    line.setAttribute('stroke-width', '1.5');
    svg.replaceChildren(line);
  }

  async function pollMetrics() {
    try {
      const cur = parseMetrics(await api('/metrics', { raw: true }));
      const prev = state.prev;
      state.prev = cur;
      if (!prev) return;
      const qps = Math.max(0, (cur.requests - prev.requests) / Math.max(1e-3, cur.t - prev.t));
      $('live-qps').textContent = qps.toFixed(qps < 10 ? 1 : 0);
      const p50 = quantile(0.5, prev, cur), p95 = quantile(0.95, prev, cur);
      if (p50 !== null) {
        $('live-p50').textContent = fmtSeconds(p50);
        $('live-p95').textContent = fmtSeconds(p95);
      }
      state.spark.push(qps);
      if (state.spark.length > 60) state.spark.shift();
      drawSpark();
    } catch (e) { /* shown by the other panels */ }
  }

  // ---- start --------------------------------------------------------------------------------
  async function start() {
    try {
      await loadInfo();
      await loadCollections();
    } catch (e) {
      if (e.status !== 401) $('server-info').textContent = 'error: ' + e.message;
      return;
    }
    if (!state.started) {
      state.started = true;
      setInterval(() => loadCollections().catch(() => {}), 2000);
      setInterval(() => loadInfo().catch(() => {}), 10000);
      setInterval(pollMetrics, 2000);
      pollMetrics();
    }
    if ($('q').value.trim()) search();
  }

  readUrl();
  start();
})();
