// Data-plane failover: two data planes in two namespaces share a VIP on a bridge, with the HA
// sync channel between them and a wireguard-go peer on a third. The active is SIGKILLed, the VIP
// moves, the standby takes over: traffic continues on the same session (wireguard-go's latest
// handshake unchanged), the standby sent nothing while passive, and a capture of everything
// both nodes sent holds no (receiver index, counter) pair twice.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { closeLab, useLab } from '../harness/tap.js';
import { genKeyPair, wireguardGo } from '../harness/wireguard.js';
import { settleWireguardGo } from '../harness/ha-pair.js';
import { ping, waitForPing } from '../harness/ping.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import type { Lab } from '../harness/lab.js';
import type { LabProcess } from '../harness/process.js';

const skip = missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv');
const fixture = fileURLToPath(new URL(`../harness/fixtures/ha-dp-node.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
// the TypeScript loader this test runs under, so the fixture runs the same way
const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

const VIP = '10.77.0.100';
const WG_PORT = 51820;

interface Sent {
  /** Microseconds since the epoch. */
  at: number;
  srcMac: string;
  receiver: number;
  counter: bigint;
}

/** WireGuard transport messages from port 51820 in a pcap of Ethernet frames. */
function transportMessages(file: string): Sent[] {
  const buf = readFileSync(file);
  const out: Sent[] = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  for (let o = 24; o + 16 <= buf.length; ) {
    const at = u32(o) * 1e6 + u32(o + 4);
    const len = u32(o + 8);
    const f = buf.subarray(o + 16, o + 16 + len);
    o += 16 + len;
    if (f.length < 14 + 20 + 8 + 16 || f.readUInt16BE(12) !== 0x0800) continue;
    const ihl = ((f[14] as number) & 0x0f) * 4;
    if (f[14 + 9] !== 17) continue;
    const udp = 14 + ihl;
    if (f.readUInt16BE(udp) !== WG_PORT) continue;
    const wg = f.subarray(udp + 8);
    if (wg.length < 32 || wg[0] !== 4) continue;
    out.push({
      at,
      srcMac: [...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':'),
      receiver: wg.readUInt32LE(4),
      counter: wg.readBigUInt64LE(8),
    });
  }
  return out;
}

async function mac(lab: Lab, ns: string, dev: string): Promise<string> {
  const r = await lab.ip(ns, ['-o', 'link', 'show', dev]);
  const m = /link\/ether ([0-9a-f:]+)/.exec(r.stdout);
  if (m?.[1] === undefined) throw new Error(`no MAC on ${dev}: ${r.stdout}`);
  return m[1];
}

/** The last `{"status": ...}` line the node prints after SIGUSR2. */
async function status(p: LabProcess): Promise<Record<string, unknown>> {
  const seen = p.output().length;
  p.signal('SIGUSR2');
  for (let i = 0; i < 100; i++) {
    const line = p.output().slice(seen).find((l) => l.line.startsWith('{"status"'));
    if (line !== undefined) return (JSON.parse(line.line) as { status: Record<string, unknown> }).status;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no status from ${p.name}: ${p.lastOutput()}`);
}

async function until(what: string, f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('the standby continues the WireGuard session of a killed active', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hadp' });
  const [nsA, nsB, nsP] = [await lab.namespace('a'), await lab.namespace('b'), await lab.namespace('p')];
  const br = await lab.bridge(nsP, { addresses: ['10.77.0.9/24'] });
  const [ethA, portA] = await lab.veth({ ns: nsA, addresses: ['10.77.0.1/24', `${VIP}/32`] }, { ns: nsP });
  const [ethB, portB] = await lab.veth({ ns: nsB, addresses: ['10.77.0.2/24'] }, { ns: nsP });
  await lab.attach(portA, br);
  await lab.attach(portB, br);
  for (const p of [portA, portB]) await lab.ip(nsP, ['link', 'set', p.name, 'up']);
  const [macA, macB] = [await mac(lab, nsA, ethA.name), await mac(lab, nsB, ethB.name)];

  const capture = `${lab.dir}/wg.pcap`;
  const dump = lab.spawn('tcpdump', 'tcpdump', ['-i', br.name, '-U', '--immediate-mode', '-n', '-w', capture, 'udp', 'port', String(WG_PORT)], { ns: nsP });
  await dump.waitReady({ line: /listening on/ });

  const [node, agent] = [await genKeyPair(), await genKeyPair()];
  const syncKey = randomBytes(32).toString('hex');
  const start = (ns: string, id: number, self: string, other: string, role: string): LabProcess => {
    const tun = lab.ifname('ha');
    const opts = {
      tun,
      vip: VIP,
      port: WG_PORT,
      privateKey: node.privateKey,
      peerPublicKey: agent.publicKey,
      peerAllowedIps: ['10.99.0.2/32'],
      listen: `${self}:4610`,
      peer: `${other}:4610`,
      keyHex: syncKey,
      nodeId: id,
      role,
    };
    const p = lab.spawn(`ha-dp-node ${id}`, tools.node, [...loader, fixture, JSON.stringify(opts)], { ns });
    void p.waitReady({ line: 'ready' }).then(async () => {
      await lab.addAddress(ns, tun, '10.99.0.1/24');
      await lab.ip(ns, ['link', 'set', tun, 'up']);
    });
    return p;
  };
  const a = start(nsA, 1, '10.77.0.1', '10.77.0.2', 'active');
  const b = start(nsB, 2, '10.77.0.2', '10.77.0.1', 'standby');
  await a.waitReady({ line: 'ready' });
  await b.waitReady({ line: 'ready' });
  await until('the TUN addresses', async () => (await lab.ip(nsB, ['-o', 'addr'])).stdout.includes('10.99.0.1'));
  await until('A TUN address', async () => (await lab.ip(nsA, ['-o', 'addr'])).stdout.includes('10.99.0.1'));

  const peer = await wireguardGo(lab, nsP, {
    keys: agent,
    addresses: ['10.99.0.2/24'],
    peers: [{ publicKey: node.publicKey, endpoint: `${VIP}:${WG_PORT}`, allowedIps: ['10.99.0.1/32'] }],
  });
  await waitForPing(nsP, '10.99.0.1', 15_000);
  await settleWireguardGo(peer);
  const before = await ping(nsP, '10.99.0.1', { count: 10, interval: 0.05 });
  t.equal(before.received, 10, 'traffic through the active');
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.ok(hs0 > 0, 'one handshake with the active');
  // The agent's keypairs the active holds (2 after a wireguard-go retransmit): the standby holds as many.
  await until('the standby to hold the session', async () => {
    const keypairs = Number((await status(a)).syncedWgSessions);
    return keypairs >= 1 && (await status(b)).syncedWgSessions === keypairs;
  });
  const sb = await status(b);
  t.equal(sb.role, 'standby', 'B reports itself standby');
  t.equal(sb.peerRole, 'active', 'B sees A active');
  t.equal(sb.rejectedForged, 0, 'no frame refused');
  t.ok(Number((await status(a)).syncedWgSessions) >= 1, 'the active sees the session acknowledged');

  // Failover: the active dies with everything; the VIP moves (keepalived's part, done by hand).
  const killedAt = Date.now() * 1000;
  a.signal('SIGKILL');
  await a.exited;
  await lab.ip(nsA, ['addr', 'del', `${VIP}/32`, 'dev', ethA.name]);
  await lab.addAddress(nsB, ethB.name, `${VIP}/32`);
  await lab.ip(nsP, ['neigh', 'flush', 'all']);
  b.signal('SIGUSR1');
  await b.waitReady({ line: /"role":"active"/ });
  await b.waitReady({ line: /"kind":"takeover"/ });
  const after = await ping(nsP, '10.99.0.1', { count: 20, interval: 0.05, wait: 1 });
  t.ok(after.received >= 19, `traffic through the new active: ${after.received}/20`);
  const hs1 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.equal(hs1, hs0, 'no new handshake: wireguard-go still on the same session');

  // Let tcpdump write what it has seen before it is stopped.
  await new Promise((r) => setTimeout(r, 1000));
  await dump.stop();
  const sent = transportMessages(capture).filter((m) => m.srcMac === macA || m.srcMac === macB);
  const fromA = sent.filter((m) => m.srcMac === macA);
  const fromB = sent.filter((m) => m.srcMac === macB);
  t.ok(fromA.length >= before.received && fromB.length >= after.received, `captured ${fromA.length} from A, ${fromB.length} from B`);
  t.equal(fromB.filter((m) => m.at < killedAt).length, 0, 'the standby sent nothing while passive');
  const seen = new Set<string>();
  const dup = sent.filter((m) => {
    const k = `${m.receiver}:${m.counter}`;
    if (seen.has(k)) return true;
    seen.add(k);
    return false;
  });
  t.same(dup, [], 'no (receiver index, counter) pair sent twice');
  t.equal(new Set(sent.map((m) => m.receiver)).size, 1, 'one session throughout');
  const maxA = fromA.reduce((m, x) => (x.counter > m ? x.counter : m), 0n);
  const minB = fromB.reduce((m, x) => (x.counter < m ? x.counter : m), BigInt(2) ** 64n);
  t.ok(minB > maxA, `the new active's counters start above the old active's (${minB} > ${maxA})`);
  await closeLab(t, lab);
});
