// ESP failover between two data planes: two IPsec data planes in two namespaces share a VIP on
// a bridge, with the HA sync channel between them; a strongSwan kernel-libipsec router on a
// third namespace holds a CHILD_SA with the active (its charon through our plugin). The standby
// imports the SAs and the policy over the channel. The active is SIGKILLed, the VIP moves, the
// standby takes over: the router's traffic continues on the same CHILD_SA (its SPIs and IKE_SA
// unchanged, no new negotiation — the standby has no charon at all here), the standby sent
// nothing while passive, and no (SPI, sequence number) pair of the capture repeats.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { closeLab, useLab } from '../harness/tap.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { ping, waitForPing } from '../harness/ping.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import type { Lab } from '../harness/lab.js';
import type { LabProcess } from '../harness/process.js';

const skip = missingPrerequisites('charon', 'swanctl', 'ping', 'setpriv');
const fixture = fileURLToPath(new URL(`../harness/fixtures/ha-esp-node.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

const VIP = '10.78.0.100';
const OURS = { lan: '10.88.1.1', net: '10.88.1.0/24', id: 'ours.ha.cvlan' };
const SITE = { lan: '10.88.2.1', net: '10.88.2.0/24', id: 'site.ha.cvlan' };

interface Esp {
  /** Microseconds since the epoch. */
  at: number;
  srcMac: string;
  spi: number;
  seq: number;
}

/** ESP-in-UDP packets (port 4500, non-zero SPI) in a pcap of Ethernet frames, GSO segments apart. */
function espPackets(file: string): Esp[] {
  const buf = readFileSync(file);
  const out: Esp[] = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  for (let o = 24; o + 16 <= buf.length; ) {
    const at = u32(o) * 1e6 + u32(o + 4);
    const len = u32(o + 8);
    const f = buf.subarray(o + 16, o + 16 + len);
    o += 16 + len;
    if (f.length < 14 + 20 + 8 + 8 || f.readUInt16BE(12) !== 0x0800) continue;
    const ihl = ((f[14] as number) & 0x0f) * 4;
    if (f[14 + 9] !== 17) continue;
    const udp = 14 + ihl;
    if (f.readUInt16BE(udp) !== 4500 && f.readUInt16BE(udp + 2) !== 4500) continue;
    const esp = f.subarray(udp + 8);
    if (esp.length < 8 || esp.readUInt32BE(0) === 0) continue;
    const srcMac = [...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    // The data plane sends with UDP GSO: on the veths and the bridge one frame can carry several
    // ESP packets of one size back to back (segmented only where they are received). The next
    // segment starts where the SPI appears again.
    const spi = esp.readUInt32BE(0);
    let seg = esp.length;
    for (let k = 24; k + 8 <= esp.length; k++) {
      if (esp.readUInt32BE(k) === spi) {
        seg = k;
        break;
      }
    }
    for (let k = 0; k + 8 <= esp.length; k += seg) out.push({ at, srcMac, spi: esp.readUInt32BE(k), seq: esp.readUInt32BE(k + 4) });
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

async function until(what: string, f: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('the standby continues the CHILD_SA of a killed active', { skip }, async (t) => {
  const lab = useLab(t, { label: 'haesp' });
  const [nsA, nsB, nsP] = [await lab.namespace('a'), await lab.namespace('b'), await lab.namespace('p')];
  const br = await lab.bridge(nsP, { addresses: ['10.78.0.9/24'] });
  const [ethA, portA] = await lab.veth({ ns: nsA, addresses: ['10.78.0.1/24', `${VIP}/32`] }, { ns: nsP });
  const [ethB, portB] = await lab.veth({ ns: nsB, addresses: ['10.78.0.2/24'] }, { ns: nsP });
  await lab.attach(portA, br);
  await lab.attach(portB, br);
  for (const p of [portA, portB]) await lab.ip(nsP, ['link', 'set', p.name, 'up']);
  const [macA, macB] = [await mac(lab, nsA, ethA.name), await mac(lab, nsB, ethB.name)];

  const capture = `${lab.dir}/esp.pcap`;
  const dump = lab.spawn('tcpdump', 'tcpdump', ['-i', br.name, '-U', '--immediate-mode', '-n', '-w', capture, 'udp', 'port', '4500'], { ns: nsP });
  await dump.waitReady({ line: /listening on/ });

  const psk = randomBytes(16).toString('hex');
  const syncKey = randomBytes(32).toString('hex');
  const start = (ns: string, id: number, self: string, other: string, role: string, withSite: boolean): LabProcess => {
    const tun = lab.ifname('hae');
    const opts = {
      tun,
      vip: VIP,
      listen: `${self}:4611`,
      peer: `${other}:4611`,
      keyHex: syncKey,
      nodeId: id,
      role,
      runtimeDir: `${lab.dir}/node${id}`,
      ...(withSite ? { site: { psk, localId: OURS.id, remoteId: SITE.id, localSubnet: OURS.net, remoteSubnet: SITE.net } } : {}),
    };
    const p = lab.spawn(`ha-esp-node ${id}`, tools.node, [...loader, fixture, JSON.stringify(opts)], { ns });
    void p.waitReady({ line: 'ready', timeoutMs: 30_000 }).then(async () => {
      await lab.addAddress(ns, tun, `${OURS.lan}/24`);
      await lab.ip(ns, ['link', 'set', tun, 'up']);
      await lab.ip(ns, ['route', 'add', SITE.net, 'dev', tun]);
    });
    return p;
  };
  const a = start(nsA, 1, '10.78.0.1', '10.78.0.2', 'active', true);
  const b = start(nsB, 2, '10.78.0.2', '10.78.0.1', 'standby', false);
  await a.waitReady({ line: 'ready', timeoutMs: 30_000 });
  await b.waitReady({ line: 'ready', timeoutMs: 30_000 });
  for (const ns of [nsA, nsB]) await until(`the route into the TUN in ${ns}`, async () => (await lab.ip(ns, ['route'])).stdout.includes(SITE.net));

  await lab.addAddress(nsP, 'lo', `${SITE.lan}/32`);
  const site = await strongswanPeer(lab, nsP, {
    localAddr: '10.78.0.9',
    remoteAddr: VIP,
    localId: SITE.id,
    remoteId: OURS.id,
    localTs: [SITE.net],
    remoteTs: [OURS.net],
    auth: { method: 'psk', psk },
    forceEncap: true,
  });
  await site.initiate(20);
  t.ok((await waitForPing(nsP, OURS.lan, 15_000, SITE.lan)).received > 0, 'site → ours through the active');
  const before = await ping(nsP, OURS.lan, { count: 10, interval: 0.05, source: SITE.lan });
  t.equal(before.received, 10, 'traffic through the active');
  const sas0 = (await site.listSas()).raw;
  await until('the standby to hold both SAs', async () => (await status(b)).syncedEspSas === 2);
  const sb = await status(b);
  t.equal(sb.role, 'standby', 'B reports itself standby');
  t.equal(sb.peerRole, 'active', 'B sees A active');
  t.equal(sb.rejectedForged, 0, 'no frame refused');
  t.equal((await status(a)).syncedEspSas, 2, 'the active sees both SAs acknowledged');
  // Counters follow within the interval: wait a little after the last packet.
  await new Promise((r) => setTimeout(r, 300));

  // Failover: the active dies with its charon; the VIP moves (keepalived's part, done by hand).
  const killedAt = Date.now() * 1000;
  a.signal('SIGKILL');
  await a.exited;
  await lab.ip(nsA, ['addr', 'del', `${VIP}/32`, 'dev', ethA.name]);
  await lab.addAddress(nsB, ethB.name, `${VIP}/32`);
  await lab.ip(nsP, ['neigh', 'flush', 'all']);
  b.signal('SIGUSR1');
  await b.waitReady({ line: /"role":"active"/ });
  await b.waitReady({ line: /"kind":"takeover"/ });
  const after = await ping(nsP, OURS.lan, { count: 20, interval: 0.05, wait: 1, source: SITE.lan });
  t.ok(after.received >= 19, `traffic through the new active: ${after.received}/20`);
  const spis = (raw: string): string[] => [...raw.matchAll(/\b(?:in|out)\s+([0-9a-f]{8})/g)].map((m) => m[1]!).sort();
  const sas1 = (await site.listSas()).raw;
  t.equal(spis(sas0).length, 2, 'the site lists one CHILD_SA (in and out SPI)', { sas0 });
  t.same(spis(sas1), spis(sas0), 'the site is on the same CHILD_SA (same SPIs)');
  const ikeId = (raw: string): string | undefined => /: #(\d+), ESTABLISHED/.exec(raw)?.[1];
  t.ok(ikeId(sas0) !== undefined && ikeId(sas1) === ikeId(sas0), `and the same IKE_SA (#${ikeId(sas1)})`, { sas1 });

  // tcpdump writes each packet as it sees it (-U), but on a loaded machine it can lag: give it
  // time to have written what the site received before it is stopped.
  const fromMac = (mac: string): number => espPackets(capture).filter((m) => m.srcMac === mac).length;
  await until('the capture to hold the replies', async () => fromMac(macB) >= after.received, 10_000).catch(() => undefined);
  await dump.stop();
  const sent = espPackets(capture).filter((m) => m.srcMac === macA || m.srcMac === macB);
  const fromA = sent.filter((m) => m.srcMac === macA);
  const fromB = sent.filter((m) => m.srcMac === macB);
  // tcpdump on a loaded machine can miss packets; it says how many (then the capture is
  // allowed to be short by that many).
  const missed = Number(/(\d+) packets? dropped by kernel/.exec(dump.output().map((l) => l.line).join('\n'))?.[1] ?? 0);
  t.ok(
    fromA.length + missed >= before.received && fromB.length + missed >= after.received,
    `captured ${fromA.length} from A, ${fromB.length} from B (tcpdump missed ${missed})`,
    { tcpdump: dump.output().map((l) => l.line), seqB: fromB.map((m) => m.seq), all: espPackets(capture).length },
  );
  t.equal(fromB.filter((m) => m.at < killedAt).length, 0, 'the standby sent nothing while passive');
  const seen = new Set<string>();
  const dup = sent.filter((m) => {
    const k = `${m.spi}:${m.seq}`;
    if (seen.has(k)) return true;
    seen.add(k);
    return false;
  });
  t.same(dup, [], 'no (SPI, sequence number) pair sent twice');
  t.equal(new Set(sent.map((m) => m.spi)).size, 1, 'one outbound SA throughout');
  const maxA = fromA.reduce((m, x) => Math.max(m, x.seq), 0);
  const minB = fromB.reduce((m, x) => Math.min(m, x.seq), 2 ** 32);
  t.ok(minB > maxA, `the new active's sequence numbers start above the old active's (${minB} > ${maxA})`);
  await closeLab(t, lab);
});
