// cvlan-vrouter's WireGuard against implementations nobody here wrote: wireguard-go and
// boringtun, configured through the stock `wg` tool over the UAPI socket. Both roles, IPv4 and
// IPv6 inside, iperf3, roaming, peer removal and re-add, and `wg show` counters.
import t from 'tap';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanWireguard, wireguardGo, boringtun, wgPair, wgShow } from '../harness/wireguard.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing();

for (const [name, other] of [
  ['wireguard-go', wireguardGo],
  ['boringtun', boringtun],
] as const) {
  for (const ourRole of ['initiator', 'responder'] as const) {
    t.test(`cvlan ⇄ ${name}, cvlan as ${ourRole}: ping v4/v6 and iperf3 both ways`, { skip }, async (t) => {
      const lab = useLab(t);
      const h = await twoHosts(lab);
      // The initiator is whoever sends first; A sends first below.
      const makers = ourRole === 'initiator' ? ([cvlanWireguard, other] as const) : ([other, cvlanWireguard] as const);
      const [a, b] = await wgPair(lab, [h.a, h.b], [makers[0], makers[1]], {
        underlay: [h.addrA, h.addrB],
        inner: ['10.99.0.1/24', '10.99.0.2/24'],
        inner6: ['fd99::1/64', 'fd99::2/64'],
        psk: true,
      });
      const first = await waitForPing(h.a, '10.99.0.2', 15_000);
      t.ok(first.received > 0, 'handshake and first ping');
      t.equal((await ping(h.b, '10.99.0.1', { count: 3, interval: 0.2 })).received, 3, 'ping back');
      t.equal((await ping(h.a, 'fd99::2', { count: 3, interval: 0.2 })).received, 3, 'IPv6 inside');
      await iperfServer(lab, h.b);
      const up = await iperfClient(h.a, '10.99.0.2', { duration: 2 });
      t.ok(up.bitsPerSecond > 20e6, `A→B ${(up.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
      const down = await iperfClient(h.a, '10.99.0.2', { duration: 2, reverse: true });
      t.ok(down.bitsPerSecond > 20e6, `B→A ${(down.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);
      const sa = await wgShow(h.a, a.name);
      const sb = await wgShow(h.b, b.name);
      t.equal(sa.peers[0]?.publicKey, b.keys.publicKey);
      t.ok((sa.peers[0]?.latestHandshake ?? 0) > Date.now() / 1000 - 60, 'wg show: recent handshake on A');
      t.ok((sb.peers[0]?.latestHandshake ?? 0) > Date.now() / 1000 - 60, 'wg show: recent handshake on B');
      t.ok((sa.peers[0]?.txBytes ?? 0) >= up.bytes, 'A sent at least the iperf3 payload');
      t.ok((sb.peers[0]?.rxBytes ?? 0) >= up.bytes, 'B received at least the iperf3 payload');
      await closeLab(t, lab);
    });
  }
}
