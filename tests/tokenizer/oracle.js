#!/usr/bin/env node
// The Hugging Face `tokenizers` oracle for the parity tests (npm @anush008/tokenizers, the Rust
// library behind a Node binding; installed by `make deps` into .deps/node/node_modules).
//
//   node oracle.js TOKENIZER_JSON [--no-special | --pretokenize | --normalize] < in > out
//
// stdin: one JSON string per line. stdout: one JSON value per input line, same order:
//   default        the token ids with the post-processor applied
//   --no-special   the token ids without it
//   --pretokenize  the pre-tokenizer's pieces (byte-level strings), after NFC
//   --normalize    the normalizer's output
// The module is looked up in QSEARCH_NODE_MODULES, else in <repo>/.deps/node/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
if (args.length < 1) {
  process.stderr.write('usage: oracle.js TOKENIZER_JSON [--no-special|--pretokenize|--normalize]\n');
  process.exit(2);
}
const modules = process.env.QSEARCH_NODE_MODULES ||
    path.join(__dirname, '..', '..', '.deps', 'node', 'node_modules');
let Tokenizer;
try {
  ({Tokenizer} = require(path.join(modules, '@anush008', 'tokenizers')));
} catch (e) {
  process.stderr.write(`oracle.js: cannot load @anush008/tokenizers from ${modules} ` +
                       `(run \`make deps\`): ${e.message}\n`);
  process.exit(3);
}
const mode = args[1] || '';
const tokenizer = Tokenizer.fromFile(args[0]);

async function main() {
  const lines = fs.readFileSync(0, 'utf8').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const texts = lines.map((l, i) => {
    try {
      return JSON.parse(l);
    } catch (e) {
      process.stderr.write(`oracle.js: line ${i + 1}: ${e.message}\n`);
      process.exit(4);
    }
  });
  const out = [];
  if (mode === '--pretokenize') {
    const pre = tokenizer.getPreTokenizer();
    const norm = tokenizer.getNormalizer();
    for (const t of texts) {
      const n = norm ? norm.normalizeString(t) : t;
      out.push(JSON.stringify(pre.preTokenizeString(n).map((p) => p[0])));
    }
  } else if (mode === '--normalize') {
    const norm = tokenizer.getNormalizer();
    for (const t of texts) out.push(JSON.stringify(norm ? norm.normalizeString(t) : t));
  } else {
    const addSpecialTokens = mode !== '--no-special';
    const batch = 512;
    for (let i = 0; i < texts.length; i += batch) {
      const encs = await tokenizer.encodeBatch(texts.slice(i, i + batch), {addSpecialTokens});
      for (const e of encs) out.push(JSON.stringify(e.getIds()));
    }
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}

main().catch((e) => {
  process.stderr.write(`oracle.js: ${e.stack || e}\n`);
  process.exit(5);
});
