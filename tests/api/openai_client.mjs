// The official `openai` npm client (installed by `make deps` into .deps/node) against
// qsearch's /v1/embeddings: floats, base64 (the client's default: it asks for base64 and
// decodes), dimensions, batch input, errors. Run by tests/api/embeddings_test.cc with
//   QSEARCH_URL=http://127.0.0.1:PORT QSEARCH_KEY=... QSEARCH_NODE_DIR=.deps/node node openai_client.mjs
// Exits non-zero on the first failed check.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(process.env.QSEARCH_NODE_DIR + '/package.json');
const OpenAI = require('openai');

const client = new OpenAI({
  apiKey: process.env.QSEARCH_KEY,
  baseURL: process.env.QSEARCH_URL + '/v1',
  maxRetries: 0,
});
const model = 'Qwen/Qwen3-Embedding-0.6B';
const texts = [
  'What is the capital of China?',
  'The capital of China is Beijing.',
  'Gravity is a force that attracts two bodies towards each other.',
];

function norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

// Floats.
const f = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
assert.equal(f.object, 'list');
assert.equal(f.model, model, 'the model name is echoed');
assert.equal(f.data.length, texts.length);
f.data.forEach((d, i) => {
  assert.equal(d.object, 'embedding');
  assert.equal(d.index, i);
  assert.ok(Array.isArray(d.embedding));
  assert.equal(d.embedding.length, Number(process.env.QSEARCH_HIDDEN));
  assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-4, `row ${i} is L2-normalised`);
});
assert.ok(f.usage.prompt_tokens > texts.length);
assert.equal(f.usage.total_tokens, f.usage.prompt_tokens);
assert.notDeepEqual(f.data[0].embedding, f.data[1].embedding);

// Base64 by default: the client requests base64 and decodes it to numbers. The values must be
// exactly the float32 values of the float response.
const b = await client.embeddings.create({ model, input: texts });
assert.equal(b.data.length, texts.length);
for (let i = 0; i < texts.length; ++i) {
  assert.equal(b.data[i].embedding.length, f.data[i].embedding.length);
  for (let j = 0; j < f.data[i].embedding.length; ++j)
    assert.equal(b.data[i].embedding[j], Math.fround(f.data[i].embedding[j]), `base64 [${i}][${j}]`);
}

// Explicit base64: the raw little-endian float32 bytes of the same request as floats.
const raw = await client.embeddings.create({ model, input: texts[1], encoding_format: 'base64' });
const one = await client.embeddings.create({ model, input: texts[1], encoding_format: 'float' });
assert.equal(typeof raw.data[0].embedding, 'string');
const buf = Buffer.from(raw.data[0].embedding, 'base64');
const floats = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
assert.equal(floats.length, one.data[0].embedding.length);
floats.forEach((x, j) => assert.equal(x, Math.fround(one.data[0].embedding[j])));

// A single string equals the same text inside a batch.
const single = await client.embeddings.create({ model, input: texts[2], encoding_format: 'float' });
assert.equal(single.data.length, 1);
single.data[0].embedding.forEach((x, j) =>
  assert.ok(Math.abs(x - f.data[2].embedding[j]) < 1e-5, `single vs batch [${j}]`));

// Dimensions (Matryoshka): the first 32 components, renormalised.
const d = await client.embeddings.create({ model, input: texts, dimensions: 32, encoding_format: 'float' });
d.data.forEach((row, i) => {
  assert.equal(row.embedding.length, 32);
  assert.ok(Math.abs(norm(row.embedding) - 1) < 1e-4);
  const head = f.data[i].embedding.slice(0, 32);
  const n = norm(head);
  row.embedding.forEach((x, j) => assert.ok(Math.abs(x - head[j] / n) < 1e-5, `mrl [${i}][${j}]`));
});
const d64 = await client.embeddings.create({ model, input: texts, dimensions: 32 });  // base64
d64.data.forEach((row, i) => assert.equal(row.embedding.length, 32));

// Errors surface as the client's typed errors with our status codes.
await assert.rejects(
  client.embeddings.create({ model, input: 'x', dimensions: 5 }),
  (e) => e.status === 422 && /dimensions/.test(e.message));
await assert.rejects(
  client.embeddings.create({ model, input: [] }),
  (e) => e.status === 422);
const wrong = new OpenAI({ apiKey: 'not-the-key', baseURL: process.env.QSEARCH_URL + '/v1', maxRetries: 0 });
await assert.rejects(wrong.embeddings.create({ model, input: 'x' }), (e) => e.status === 401);

console.log(`openai client ${require('openai/version').VERSION}: all checks passed`);
