// Module hook (node:module register) that instruments the compiled modules a target fuzzes
// (given as file URLs) with istanbul, the coverage jsfuzz reads from globalThis.__coverage__.
// jsfuzz instruments only what is loaded with require(); the project is ES modules. Only the
// parser's own modules are instrumented: the rest of the import graph adds no useful signal
// and instrumenting it costs seconds at start-up.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { createInstrumenter } = require('istanbul-lib-instrument');
const instrumenter = createInstrumenter({ compact: true, esModules: true });

let files = new Set();

export function initialize(data) {
  files = new Set(data.files);
}

export async function load(url, context, next) {
  const result = await next(url, context);
  if (!files.has(url) || result.format !== 'module' || result.source == null) return result;
  const source = instrumenter.instrumentSync(String(result.source), fileURLToPath(url));
  return { ...result, source };
}
