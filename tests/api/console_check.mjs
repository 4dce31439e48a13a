// Drives the search console in headless Chromium (Debian's chromium through playwright-core):
// loads /console?collection=..&q=..&k=.. on a test server that needs a key, types the key into
// the page's prompt, and checks what renders: results with ids, scores, highlights and metadata;
// the collection list with document counts and a running import's progress; the live request
// rate from /metrics; the URL state; and that the key was kept out of storage, cookies and the
// URL. Saves screenshots. Run by tests/api/console_test.cc with
//   QSEARCH_NODE_DIR=.deps/node QSEARCH_URL=http://127.0.0.1:PORT QSEARCH_KEY=... \
//   QSEARCH_CHROMIUM=/usr/bin/chromium QSEARCH_OUT=DIR node console_check.mjs
// Prints "all checks passed" or the first failed check (exit 1).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(process.env.QSEARCH_NODE_DIR + '/package.json');
const { chromium } = require('playwright-core');
const url = process.env.QSEARCH_URL, key = process.env.QSEARCH_KEY, out = process.env.QSEARCH_OUT;

const browser = await chromium.launch({
  executablePath: process.env.QSEARCH_CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('401')) errors.push(m.text()); });
  const blocked = [];
  page.on('request', (r) => { if (!r.url().startsWith(url)) blocked.push(r.url()); });

  await page.goto(`${url}/console?collection=docs&q=capital%20city&k=5`);
  // Keys are configured: the page asks for one.
  await page.waitForSelector('#key-form:not([hidden])', { timeout: 15000 });
  await page.screenshot({ path: `${out}/console-key.png` });
  await page.fill('#key', key);
  await page.click('#key-form button');

  // The URL's query ran: k results, best first, each with id and score.
  await page.waitForSelector('#results li.hit', { timeout: 30000 });
  const hits = await page.$$eval('#results li.hit', (lis) => lis.map((li) => ({
    id: li.dataset.id,
    score: li.querySelector('.score').textContent,
    text: li.querySelector('.text')?.textContent ?? '',
    marks: [...li.querySelectorAll('mark')].map((m) => m.textContent.toLowerCase()),
    meta: [...li.querySelectorAll('.meta span')].map((s) => s.textContent),
  })));
  assert.equal(hits.length, 5, 'k=5 results');
  for (const h of hits) {
    assert.match(h.id, /^doc-\d+$/);
    assert.match(h.score, /^score -?\d\.\d{4}$/);
    assert.ok(h.text.length > 0, 'result text shown');
    assert.ok(h.meta.some((m) => /^lang: (en|de)$/.test(m)), 'metadata shown: ' + h.meta.join(', '));
  }
  const marked = hits.flatMap((h) => h.marks);
  assert.ok(marked.includes('capital') || marked.includes('city'), 'query words highlighted: ' + marked.join(','));
  assert.equal(await page.inputValue('#q'), 'capital city');
  assert.equal(await page.inputValue('#k'), '5');
  assert.equal(await page.inputValue('#collection'), 'docs');
  assert.match(await page.textContent('#status'), /^5 results in \d+\.\d ms$/);
  assert.match(await page.textContent('#server-info'), /test-model/);

  // The collection list: document counts, and the import that is running meanwhile.
  await page.waitForSelector('#collections li[data-collection="docs"] .job', { timeout: 20000 });
  const row = await page.textContent('#collections li[data-collection="docs"]');
  assert.match(row, /import: \d+/, 'import progress shown: ' + row);
  assert.ok(await page.$('#collections li[data-collection="docs"] progress'), 'progress bar');
  const other = await page.textContent('#collections li[data-collection="small"] .count');
  assert.equal(other.trim(), '3');

  // Live request rate and search latency from /metrics (two polls, 2 s apart).
  await page.waitForFunction(() => /^\d+(\.\d)?$/.test(document.getElementById('live-qps').textContent), null, { timeout: 15000 });
  await page.screenshot({ path: `${out}/console.png`, fullPage: true });

  // Filters and mode travel in the URL; a filter narrows the results.
  await page.fill('#filter', '{"lang": "de"}');
  await page.click('#go');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('results in') &&
                                   location.search.includes('filter='), null, { timeout: 15000 });
  const langs = await page.$$eval('#results .meta span', (s) => s.map((x) => x.textContent).filter((t) => t.startsWith('lang')));
  assert.ok(langs.length > 0 && langs.every((t) => t === 'lang: de'), 'filtered: ' + langs.join(','));
  const params = new URL(page.url()).searchParams;
  assert.equal(params.get('filter'), '{"lang": "de"}');
  assert.equal(params.get('q'), 'capital city');

  // A bad filter is reported in the page, not sent.
  await page.fill('#filter', '{oops');
  await page.click('#go');
  assert.match(await page.textContent('#status'), /not JSON/);

  // The key stays in page memory: not in storage, cookies or the URL.
  const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie]));
  assert.ok(!stored.includes(key), 'key in storage: ' + stored);
  assert.ok(!page.url().includes(key), 'key in URL');
  assert.ok(!(await context.cookies()).some((c) => c.value.includes(key)), 'key in a cookie');
  assert.equal(await page.inputValue('#key'), '', 'key left in the input');
  assert.deepEqual(blocked, [], 'requests to other origins');
  assert.deepEqual(errors, [], 'page errors');
  console.log('all checks passed');
} catch (e) {
  if (page) await page.screenshot({ path: `${out}/console-failure.png`, fullPage: true }).catch(() => {});
  console.log('FAILED: ' + (e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
