// Two strongSwan charons with kernel-libipsec (userspace ESP) negotiate IKEv2 with a PSK and carry
// ping between their inner subnets: the "legacy router" peer every IPsec test will talk to.
import t from 'tap';
import { closeLab, useLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { ping, waitForPing } from '../harness/ping.js';
import { missingPrerequisites } from '../harness/tools.js';
import { randomSuffix } from '../harness/names.js';

const skip = missingPrerequisites('charon', 'swanctl', 'ping', 'setpriv', 'unshare');

t.test('strongSwan kernel-libipsec ⇄ kernel-libipsec, IKEv2 PSK', { skip }, async (t) => {
  const lab = useLab(t, { label: 'ss' });
  const h = await twoHosts(lab);
  // inner "LAN" addresses live on loopback: charon routes the remote subnet into ipsec0 with
  // the local one as source
  await lab.addAddress(h.a, 'lo', '10.10.1.1/32');
  await lab.addAddress(h.b, 'lo', '10.10.2.1/32');
  const psk = `lab-${randomSuffix(16)}`;
  const common = { auth: { method: 'psk', psk } as const, ikeProposals: 'aes256gcm16-prfsha256-x25519', espProposals: 'aes256gcm16' };
  const a = await strongswanPeer(lab, h.a, {
    ...common,
    localAddr: h.addrA,
    remoteAddr: h.addrB,
    localId: 'a.lab',
    remoteId: 'b.lab',
    localTs: ['10.10.1.0/24'],
    remoteTs: ['10.10.2.0/24'],
  });
  const b = await strongswanPeer(lab, h.b, {
    ...common,
    localAddr: h.addrB,
    remoteAddr: h.addrA,
    localId: 'b.lab',
    remoteId: 'a.lab',
    localTs: ['10.10.2.0/24'],
    remoteTs: ['10.10.1.0/24'],
  });
  t.not(a.process.pid, b.process.pid);

  await a.initiate();
  const sasA = await a.listSas();
  t.match(sasA.ike, [{ name: 'lab', state: 'ESTABLISHED' }], 'IKE_SA established on the initiator');
  t.match(sasA.child, [{ name: 'lab', state: 'INSTALLED' }], 'CHILD_SA installed on the initiator');
  const sasB = await b.listSas();
  t.match(sasB.child, [{ name: 'lab', state: 'INSTALLED' }], 'CHILD_SA installed on the responder');

  await waitForPing(h.a, '10.10.2.1', 10_000, '10.10.1.1');
  const p = await ping(h.a, '10.10.2.1', { source: '10.10.1.1', count: 5, interval: 0.05 });
  t.equal(p.received, 5, 'inner subnets reach each other through ESP');
  t.match((await a.listSas()).raw, /bytes_i|in\s+\w+,\s+\d+ bytes/, 'swanctl reports traffic counters');

  // and nothing else does: without the responder's charon the inner path is gone
  await b.process.stop();
  const after = await ping(h.a, '10.10.2.1', { source: '10.10.1.1', count: 2, wait: 1 });
  t.equal(after.received, 0, 'no inner traffic once the responder is stopped');
  await closeLab(t, lab);
});
