// Validates docs/openapi.json with @apidevtools/swagger-parser (OpenAPI 3.1 schema + $refs),
// then checks recorded responses against it: each line of the samples file is
// {"method", "route", "status", "content_type", "body"} (route: the path template) and its body
// must match the response schema the description gives for that route and status (Ajv, JSON
// Schema 2020-12, what OpenAPI 3.1 uses). Run by tests/api/openapi_test.cc with
//   QSEARCH_NODE_DIR=.deps/node node openapi_check.mjs docs/openapi.json [samples.ndjson]
// Prints "all checks passed" and exits 0, or prints every problem and exits 1.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.QSEARCH_NODE_DIR + '/package.json');
const SwaggerParser = require('@apidevtools/swagger-parser');
const Ajv2020 = require('ajv/dist/2020').default;

const [specPath, samplesPath] = process.argv.slice(2);
const problems = [];

let api;
try {
  api = await SwaggerParser.validate(specPath);
} catch (e) {
  console.log(`PROBLEM: ${specPath} is not a valid OpenAPI description: ${e.message}`);
  process.exit(1);
}
console.log(`valid: ${api.info.title} ${api.info.version}, OpenAPI ${api.openapi}, ` +
            `${Object.keys(api.paths).length} paths`);
if (!api.openapi.startsWith('3.1')) problems.push(`openapi is ${api.openapi}, expected 3.1.x`);

if (samplesPath) {
  const deref = await SwaggerParser.dereference(JSON.parse(readFileSync(specPath, 'utf8')));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  let checked = 0;
  for (const line of readFileSync(samplesPath, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const s = JSON.parse(line);
    const where = `${s.method} ${s.route} -> ${s.status}`;
    const op = deref.paths[s.route]?.[s.method.toLowerCase()];
    if (!op) { problems.push(`${where}: not described`); continue; }
    const status = String(s.status);
    const response = op.responses[status] ?? op.responses[status[0] + 'XX'] ?? op.responses.default;
    if (!response) { problems.push(`${where}: status ${status} not described`); continue; }
    const type = (s.content_type || '').split(';')[0].trim();
    const media = response.content?.[type];
    if (!media) { problems.push(`${where}: content type ${type} not described`); continue; }
    if (type !== 'application/json') { ++checked; continue; }
    const validate = ajv.compile(media.schema);
    if (!validate(s.body)) {
      problems.push(`${where}: body does not match: ${ajv.errorsText(validate.errors)}\n  ` +
                    JSON.stringify(s.body).slice(0, 300));
    }
    ++checked;
  }
  console.log(`${checked} recorded responses checked against their schemas`);
}

if (problems.length) {
  for (const p of problems) console.log('PROBLEM: ' + p);
  process.exit(1);
}
console.log('all checks passed');
