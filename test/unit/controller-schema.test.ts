// The published JSON Schema (schema/controller-document.schema.json) and the validator
// (src/config/controller.ts) agree on a corpus of documents (test/fixtures/controller-documents):
//   good/      both accept
//   bad/       both refuse (shape, types, ranges, syntax of values)
//   semantic/  the schema accepts, the validator refuses: what a schema cannot express
//              (uniqueness, host bits, cross references, algorithms, placeholders). Pinned so
//              that a schema change catching one of them moves it to bad/.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parseControllerDocs } from '../../src/config/controller.js';
import { ConfigError } from '../../src/errors.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CORPUS = join(ROOT, 'test', 'fixtures', 'controller-documents');
const schema = JSON.parse(readFileSync(join(ROOT, 'schema', 'controller-document.schema.json'), 'utf8')) as object;

// strict: unknown keywords or types the schema forgot are errors, not silently ignored.
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats.default(ajv);
const validate = ajv.compile(schema);

function corpus(kind: 'good' | 'bad' | 'semantic'): [string, unknown][] {
  return readdirSync(join(CORPUS, kind))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(readFileSync(join(CORPUS, kind, f), 'utf8')) as unknown]);
}

/** The validator's issues, or [] when it accepts the document. */
function validatorIssues(doc: unknown): string[] {
  try {
    parseControllerDocs([doc]);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.issues.map((i) => `${i.path}: ${i.reason}`);
  }
}

const schemaErrors = (doc: unknown): string[] => (validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`));

t.test('the schema is a draft 2020-12 schema', async (t) => {
  t.equal((schema as { $schema: string }).$schema, 'https://json-schema.org/draft/2020-12/schema');
});

t.test('good documents: both accept', async (t) => {
  const docs = corpus('good');
  t.ok(docs.length >= 8, `${docs.length} good documents`);
  for (const [name, doc] of docs) {
    t.same(schemaErrors(doc), [], `${name}: schema accepts`);
    t.same(validatorIssues(doc), [], `${name}: validator accepts`);
  }
});

t.test('bad documents: both refuse', async (t) => {
  const docs = corpus('bad');
  t.ok(docs.length >= 40, `${docs.length} bad documents`);
  for (const [name, doc] of docs) {
    t.not(schemaErrors(doc).length, 0, `${name}: schema refuses`);
    t.not(validatorIssues(doc).length, 0, `${name}: validator refuses`);
  }
});

t.test('semantic documents: the schema accepts, the validator refuses', async (t) => {
  const docs = corpus('semantic');
  t.ok(docs.length >= 8, `${docs.length} semantic documents`);
  for (const [name, doc] of docs) {
    t.same(schemaErrors(doc), [], `${name}: schema accepts (a schema cannot express this)`);
    t.not(validatorIssues(doc).length, 0, `${name}: validator refuses`);
  }
});
