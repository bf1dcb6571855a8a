// Module hook (node:module register) that instruments the project's compiled modules
// (dist/src/**) with istanbul, the coverage jsfuzz reads from globalThis.__coverage__.
// jsfuzz instruments only what is loaded with require(); the project is ES modules.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { createInstrumenter } = require('istanbul-lib-instrument');
const instrumenter = createInstrumenter({ compact: true, esModules: true });

let root;

export function initialize(data) {
  root = data.root;
}

export async function load(url, context, next) {
  const result = await next(url, context);
  if (!url.startsWith(root) || result.format !== 'module' || result.source == null) return result;
  const source = instrumenter.instrumentSync(String(result.source), fileURLToPath(url));
  return { ...result, source };
}
