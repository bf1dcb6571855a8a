'use strict';
// The WireGuard UAPI `set=1` request as a client writes it to the socket (parseSetRequest).
const { instrument, load, refusalsOnly, target } = require('../register.js');

instrument(['wireguard/uapi.js', 'wireguard/control.js']);

const uapi = load('wireguard/uapi.js');

const fuzz = target(async (buf) => {
  const u = await uapi;
  await refusalsOnly(async () => {
    const text = buf.toString('utf8');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    u.parseSetRequest(lines);
  });
});

module.exports = { fuzz };
