/**
 * A userspace WireGuard interface from a program, with the `cvlan-vrouter` library: open the
 * device, give it a key and a peer, watch its events, send it traffic, read its counters, close
 * it (the TUN interface goes with it). Needs root (TUN, UDP socket) and Linux x64.
 *
 *   npx tsc -p examples && sudo node dist/examples/wireguard-device.js [IFNAME]
 *
 * Prints one JSON line with what the device reported.
 */
import { execFileSync } from 'node:child_process';
import { WireGuardDevice, decodeKey, genkey, pubkey, totals, nativeInfo, CvlanError, type DataplaneEvent } from 'cvlan-vrouter';

const ifname = process.argv[2] ?? 'cvexample0';
const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });

// Keys in `wg genkey` form; decodeKey gives bytes in memory that is zeroed on dispose().
const ourKey = decodeKey(genkey());
const peerPublic = decodeKey(pubkey(genkey()));

let dev: WireGuardDevice;
try {
  dev = WireGuardDevice.open({ tunName: ifname, listenPort: 0, workers: 1, privateKey: ourKey.bytes });
} catch (e) {
  // Every error the library raises on purpose has a stable code, e.g. CVLAN_ERR_PERMISSION.
  if (e instanceof CvlanError) process.stderr.write(`${e.code}: ${e.message}\n`);
  throw e;
} finally {
  ourKey.dispose();
}

const events: DataplaneEvent['type'][] = [];
dev.on('event', (ev) => events.push(ev.type));

// A peer at a local port nobody answers on: our packets to it start handshakes that stay unanswered.
dev.apply({ peers: [{ publicKey: peerPublic.bytes, endpoint: '127.0.0.1:9', allowedIps: ['10.123.0.2/32'], persistentKeepalive: 0 }] });
peerPublic.dispose();

ip('address', 'add', '10.123.0.1/24', 'dev', ifname);
ip('link', 'set', 'dev', ifname, 'up');
try {
  execFileSync('ping', ['-c', '3', '-i', '0.2', '-W', '1', '10.123.0.2'], { stdio: 'ignore' });
} catch {
  // No answer is expected: the peer does not exist. The packets still went into the device.
}
// Events come from the worker threads through the event loop: give them a moment to arrive.
await new Promise((resolve) => setTimeout(resolve, 500));

const state = dev.state();
const workers = totals(dev.stats());
const counters = dev.counters();
const report = {
  addon: nativeInfo().version,
  interface: dev.tunName,
  listen_port: dev.listenPort,
  peers: state.peers.length,
  allowed_ips: state.peers[0]?.allowedIps ?? [],
  tun_rx_packets: Number(workers.tunRxPackets),
  udp_tx_packets: Number(workers.udpTxPackets),
  handshake_messages: Number(counters.handshakeMessages),
  events: [...new Set(events)],
};
dev.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
