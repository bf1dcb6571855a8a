'use strict';
// Loaded first by every target: instrument dist/src/** as it is imported.
const { register } = require('node:module');
const { pathToFileURL } = require('node:url');
const path = require('node:path');

const repo = path.resolve(__dirname, '../..');
const dist = pathToFileURL(path.join(repo, 'dist/src/')).href;
register('./instrument.mjs', pathToFileURL(__filename), { data: { root: dist } });

/** Imports a compiled module of the project, e.g. `load('strongswan/vici/encoding.js')`. */
function load(rel) {
  return import(pathToFileURL(path.join(repo, 'dist/src', rel)).href);
}

/**
 * Runs `body`; an error the project raises on purpose (a CvlanError: bad input refused with a
 * reason) is the expected outcome, anything else (TypeError, RangeError, a failed invariant) is
 * a finding and propagates to the fuzzer.
 */
async function refusalsOnly(body) {
  const { CvlanError } = await load('errors.js');
  try {
    await body();
  } catch (e) {
    if (e instanceof CvlanError) return;
    throw e;
  }
}

module.exports = { load, refusalsOnly };
