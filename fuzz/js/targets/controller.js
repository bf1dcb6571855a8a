'use strict';
// The controller document (JSON, from the --config file or the admin API): parsed as the
// daemon reads it, then validated (parseControllerDocs). Every refusal must be a ConfigError.
const { instrument, load, refusalsOnly, target } = require('../register.js');

instrument(['config/controller.js', 'config/normalize.js', 'config/production.js']);

const controller = load('config/controller.js');

const fuzz = target(async (buf) => {
  const c = await controller;
  let doc;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch {
    return; // not JSON: refused before validation
  }
  await refusalsOnly(async () => c.parseControllerDocs(Array.isArray(doc) ? doc : [doc]));
});

module.exports = { fuzz };
