'use strict';
// Shared by the targets: coverage for the modules under test, and what counts as a finding.
const { register } = require('node:module');
const { pathToFileURL } = require('node:url');
const path = require('node:path');

const repo = path.resolve(__dirname, '../..');
const url = (rel) => pathToFileURL(path.join(repo, 'dist/src', rel)).href;

/** Instruments the compiled modules `rels` (e.g. 'wireguard/uapi.js') when they are imported. */
function instrument(rels) {
  register('./instrument.mjs', pathToFileURL(__filename), { data: { files: rels.map(url) } });
}

/** Imports a compiled module of the project, e.g. `load('strongswan/vici/encoding.js')`. */
function load(rel) {
  return import(url(rel));
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

/**
 * jsfuzz caps its mutations at 4 KiB but lets inputs grow past that through its corpus (we saw
 * 23 MB after a few minutes, and its worker running out of memory passing them over IPC). Such
 * inputs are skipped: they add no coverage, so they never become parents of more.
 */
const MAX_INPUT = 64 * 1024;

/** The `fuzz` export of a target: `body(buf)` for every input of a sane size. */
function target(body) {
  return async (buf) => {
    if (buf.length > MAX_INPUT) return;
    await body(buf);
  };
}

module.exports = { instrument, load, refusalsOnly, target };
