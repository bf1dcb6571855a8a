// Userspace WireGuard peers through the harness: wireguard-go and boringtun, each with itself and
// with the other, over a veth underlay in two namespaces.
import t from 'tap';
import { closeLab, useLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { boringtun, wgPair, wgShow, wireguardGo } from '../harness/wireguard.js';
import { iperfClient, iperfServer, ping, waitForPing } from '../harness/ping.js';
import { missingPrerequisites } from '../harness/tools.js';

const skip = missingPrerequisites('wg', 'wireguardGo', 'boringtun', 'iperf3', 'ping', 'setpriv');

const pairs = [
  ['wireguard-go', wireguardGo, 'wireguard-go', wireguardGo],
  ['boringtun', boringtun, 'boringtun', boringtun],
  ['wireguard-go', wireguardGo, 'boringtun', boringtun],
] as const;

for (const [nameA, makeA, nameB, makeB] of pairs) {
  t.test(`${nameA} ⇄ ${nameB}`, { skip }, async (t) => {
    const lab = useLab(t, { label: 'wg' });
    const h = await twoHosts(lab);
    const [a, b] = await wgPair(lab, [h.a, h.b], [makeA, makeB], {
      underlay: [h.addrA, h.addrB],
      inner: ['10.99.0.1/24', '10.99.0.2/24'],
      psk: true,
    });
    await waitForPing(h.a, '10.99.0.2', 10_000);
    const p = await ping(h.b, '10.99.0.1', { count: 5, interval: 0.05 });
    t.equal(p.received, 5, `all pings through ${nameB} → ${nameA} answered`);

    const showA = await wgShow(h.a, a.name);
    t.equal(showA.publicKey, a.keys.publicKey, 'wg show reports the configured key');
    t.equal(showA.peers.length, 1);
    t.equal(showA.peers[0]?.publicKey, b.keys.publicKey);
    t.ok((showA.peers[0]?.latestHandshake ?? 0) > 0, 'handshake recorded');
    t.ok((showA.peers[0]?.rxBytes ?? 0) > 0, 'bytes received counted');

    if (nameA === 'wireguard-go' && nameB === 'wireguard-go') {
      await iperfServer(lab, h.b, { bind: '10.99.0.2' });
      const r = await iperfClient(h.a, '10.99.0.2', { duration: 2 });
      t.ok(r.bitsPerSecond > 1e6, `iperf3 through the tunnel: ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
      t.ok(r.bytes > 0);
    }

    // The tunnel really is the path: without the peer the inner address is unreachable.
    await b.process.stop();
    const after = await ping(h.a, '10.99.0.2', { count: 2, interval: 0.2, wait: 1 });
    t.equal(after.received, 0, 'no replies once the far peer is stopped');
    await closeLab(t, lab);
  });
}
