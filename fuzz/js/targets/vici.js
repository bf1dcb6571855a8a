'use strict';
// VICI as read from charon's socket: the transport (FrameDecoder), the packet layer
// (decodePacket) and the message tree (decodeMessage); a decoded message encodes back to an
// equal tree.
const { isDeepStrictEqual } = require('node:util');
const { instrument, load, refusalsOnly, target } = require('../register.js');

instrument(['strongswan/vici/encoding.js']);

const vici = load('strongswan/vici/encoding.js');

const fuzz = target(async (buf) => {
  const v = await vici;
  await refusalsOnly(async () => {
    // The stream in two reads, split where the first byte says.
    const cut = buf.length > 0 ? buf[0] % (buf.length + 1) : 0;
    const dec = new v.FrameDecoder();
    const segments = [...dec.push(buf.subarray(0, cut)), ...dec.push(buf.subarray(cut))];
    for (const s of segments) await refusalsOnly(async () => v.decodePacket(s));
  });
  await refusalsOnly(async () => v.decodePacket(buf));
  await refusalsOnly(async () => {
    const tree = v.decodeMessage(buf);
    let again;
    try {
      again = v.encodeMessage(tree);
    } catch {
      return; // a name that grew past 255 bytes when decoded as text: refused on encode
    }
    if (!isDeepStrictEqual(v.decodeMessage(again), tree)) throw new Error('decodeMessage(encodeMessage(tree)) differs');
  });
});

module.exports = { fuzz };
