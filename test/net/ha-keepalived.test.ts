// Active-passive with keepalived deciding: two nodes (HaNode + HaSync + a WireGuard device on the
// VIP) in two namespaces on a bridge, a wireguard-go peer on a third. keepalived elects the
// active node and moves the VIP; the control plane follows its notify FIFO and drives the data
// plane's role. The active node's whole process (keepalived with it) is SIGKILLed under a ping at
// a fixed rate: the gap is measured, the session survives (no new handshake), no (receiver,
// counter) pair is sent twice. Then the old active rejoins as standby (no fail-back), and both
// split-brain cuts leave exactly one node on the VIP; across the VRRP cut the peer's traffic keeps
// reaching the active, and neither node initiates a handshake in the whole run.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeLab, useLab } from '../harness/tap.js';
import { genKeyPair, wireguardGo } from '../harness/wireguard.js';
import { waitForPing } from '../harness/ping.js';
import { missingPrerequisites, resolveTool, tools } from '../harness/tools.js';
import type { Lab } from '../harness/lab.js';
import type { LabProcess } from '../harness/process.js';
import { DEFAULT_HA_LEASE_MESSAGES } from '../../src/config/local.js';
import type { HaConfig } from '../../src/config/model.js';

const skip = missingPrerequisites('wg', 'wireguardGo', 'ping', 'setpriv', 'nft') ?? (resolveTool('/usr/sbin/keepalived') ? undefined : 'keepalived is not installed (scripts/setup.sh)');
const fixture = fileURLToPath(new URL(`../harness/fixtures/ha-ctl-node.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

const VIP = '10.78.0.100';
const WG_PORT = 51820;
const TUN_ADDR = '10.98.0.1';

/** WireGuard messages from UDP port 51820 in a pcap: capture time (ms), type, source MAC, and for transport messages (type 4) receiver index and counter. */
function wireguardMessages(file: string): Array<{ at: number; type: number; srcMac: string; receiver: number; counter: bigint }> {
  const buf = readFileSync(file);
  const out: Array<{ at: number; type: number; srcMac: string; receiver: number; counter: bigint }> = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  for (let o = 24; o + 16 <= buf.length; ) {
    const at = u32(o) * 1000 + u32(o + 4) / 1000;
    const len = u32(o + 8);
    const f = buf.subarray(o + 16, o + 16 + len);
    o += 16 + len;
    if (f.length < 14 + 20 + 8 + 16 || f.readUInt16BE(12) !== 0x0800 || f[14 + 9] !== 17) continue;
    const udp = 14 + ((f[14] as number) & 0x0f) * 4;
    if (f.readUInt16BE(udp) !== WG_PORT) continue;
    const wg = f.subarray(udp + 8);
    if (wg.length < 32) continue;
    const srcMac = [...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const type = wg[0] as number;
    out.push({ at, type, srcMac, receiver: type === 4 ? wg.readUInt32LE(4) : 0, counter: type === 4 ? wg.readBigUInt64LE(8) : 0n });
  }
  return out;
}

/** ARP frames in a pcap announcing `ip` (sender protocol address): capture time (ms), sender MAC, opcode. */
function arpAnnouncements(file: string, ip: string): Array<{ at: number; srcMac: string; op: number; tip: string }> {
  const buf = readFileSync(file);
  const out: Array<{ at: number; srcMac: string; op: number; tip: string }> = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  for (let o = 24; o + 16 <= buf.length; ) {
    const at = u32(o) * 1000 + u32(o + 4) / 1000;
    const len = u32(o + 8);
    const f = buf.subarray(o + 16, o + 16 + len);
    o += 16 + len;
    if (f.length < 14 + 28 || f.readUInt16BE(12) !== 0x0806) continue;
    const a = f.subarray(14);
    if ([...a.subarray(14, 18)].join('.') !== ip) continue;
    const srcMac = [...a.subarray(8, 14)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    out.push({ at, srcMac, op: a.readUInt16BE(6), tip: [...a.subarray(24, 28)].join('.') });
  }
  return out;
}

async function mac(lab: Lab, ns: string, dev: string): Promise<string> {
  const m = /link\/ether ([0-9a-f:]+)/.exec((await lab.ip(ns, ['-o', 'link', 'show', dev])).stdout);
  if (m?.[1] === undefined) throw new Error(`no MAC on ${dev}`);
  return m[1];
}

// Watches new lines rather than indexing the kept output: that keeps only the last 200 lines,
// and a chatty node (keepalived's log, one line per view) reaches that within the test.
async function view(p: LabProcess): Promise<Record<string, unknown>> {
  let found: string | undefined;
  const stop = p.onLine((l) => {
    if (found === undefined && l.line.startsWith('{"view"')) found = l.line;
  });
  try {
    p.signal('SIGUSR2');
    for (let i = 0; i < 100 && found === undefined; i++) await new Promise((r) => setTimeout(r, 20));
  } finally {
    stop();
  }
  if (found === undefined) throw new Error(`no view from ${p.name}: ${p.lastOutput()}`);
  return (JSON.parse(found) as { view: Record<string, unknown> }).view;
}

async function until(what: string, f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const hasVip = async (lab: Lab, ns: string): Promise<boolean> => (await lab.ip(ns, ['-o', 'addr'])).stdout.includes(` ${VIP}/`);

t.test('keepalived moves the VIP, the standby continues the session, the old active rejoins as standby, split brain leaves one', { skip }, async (t) => {
  const lab = useLab(t, { label: 'hactl' });
  const [nsA, nsB, nsP] = [await lab.namespace('a'), await lab.namespace('b'), await lab.namespace('p')];
  const br = await lab.bridge(nsP, { addresses: ['10.78.0.9/24'] });
  const [ethA, portA] = await lab.veth({ ns: nsA, addresses: ['10.78.0.1/24'] }, { ns: nsP });
  const [ethB, portB] = await lab.veth({ ns: nsB, addresses: ['10.78.0.2/24'] }, { ns: nsP });
  await lab.attach(portA, br);
  await lab.attach(portB, br);
  for (const p of [portA, portB]) await lab.ip(nsP, ['link', 'set', p.name, 'up']);
  const [macA, macB] = [await mac(lab, nsA, ethA.name), await mac(lab, nsB, ethB.name)];

  const capture = join(lab.dir, 'wg.pcap');
  const dump = lab.spawn('tcpdump', 'tcpdump', ['-i', br.name, '-U', '--immediate-mode', '-n', '-w', capture, 'udp', 'port', String(WG_PORT), 'or', 'arp'], { ns: nsP });
  await dump.waitReady({ line: /listening on/ });

  const keyFile = join(lab.dir, 'ha.key');
  writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
  const [node, agent] = [await genKeyPair(), await genKeyPair()];
  const ha = (id: number, self: string, other: string, iface: string, priority: number): HaConfig => ({
    nodeId: id,
    localAddress: self,
    peerAddress: other,
    interface: iface,
    vips: [`${VIP}/24`],
    privateVips: [],
    virtualRouterId: 77,
    priority,
    preempt: false,
    advertIntervalMs: 200,
    syncKeyFile: keyFile,
    syncPort: 4610,
    syncIntervalMs: 50,
    leaseMessages: DEFAULT_HA_LEASE_MESSAGES,
    // No charon in this test: the IKE half is covered in docs/ha.md.
    charonHa: false,
    keepalivedPath: '/usr/sbin/keepalived',
  });
  const start = (name: string, ns: string, config: HaConfig): LabProcess => {
    const tun = lab.ifname('ha');
    const opts = {
      ha: config,
      stateDir: join(lab.dir, name),
      generation: 1,
      tun,
      vip: VIP,
      port: WG_PORT,
      privateKey: node.privateKey,
      peerPublicKey: agent.publicKey,
      peerAllowedIps: ['10.98.0.2/32'],
    };
    const p = lab.spawn(`ha-ctl-node ${name}`, tools.node, [...loader, fixture, JSON.stringify(opts)], { ns });
    void p.waitReady({ line: 'ready', timeoutMs: 20_000 }).then(async () => {
      await lab.addAddress(ns, tun, `${TUN_ADDR}/24`);
      await lab.ip(ns, ['link', 'set', tun, 'up']);
    });
    return p;
  };
  const haA = ha(1, '10.78.0.1', '10.78.0.2', ethA.name, 150);
  const haB = ha(2, '10.78.0.2', '10.78.0.1', ethB.name, 100);
  let a = start('a', nsA, haA);
  await a.waitReady({ line: /"role":"active"/, timeoutMs: 20_000 });
  const b = start('b', nsB, haB);
  await b.waitReady({ line: 'ready', timeoutMs: 20_000 });
  t.ok(await hasVip(lab, nsA), 'keepalived put the VIP on A');
  t.notOk(await hasVip(lab, nsB), 'and not on B');
  await until('the TUN addresses', async () => (await lab.ip(nsA, ['-o', 'addr'])).stdout.includes(TUN_ADDR) && (await lab.ip(nsB, ['-o', 'addr'])).stdout.includes(TUN_ADDR));

  const peer = await wireguardGo(lab, nsP, {
    keys: agent,
    addresses: ['10.98.0.2/24'],
    peers: [{ publicKey: node.publicKey, endpoint: `${VIP}:${WG_PORT}`, allowedIps: ['10.98.0.1/32'] }],
  });
  await waitForPing(nsP, TUN_ADDR, 15_000);
  t.ok(((await peer.show()).peers[0]?.latestHandshake ?? 0) > 0, 'a handshake with the active node');
  // wireguard-go arms its initiation retransmit after sending; when the response is processed
  // first (a fast answer on a loaded machine), the timer stays armed and it initiates again
  // REKEY_TIMEOUT (5 s + up to 1/3 s jitter) after a completed handshake (its verbose log:
  // "Received handshake response", then "Handshake did not complete after 5 seconds"). Past that,
  // any new handshake is ours.
  await new Promise((r) => setTimeout(r, 6000));
  const hs0 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  // The peer's keypairs the active holds (2 after such a retransmit): the standby holds as many.
  let keypairs = 0;
  await until('the standby to hold the session', async () => {
    keypairs = Number((await view(a)).synced_wireguard_sessions);
    return keypairs >= 1 && (await view(b)).synced_wireguard_sessions === keypairs;
  });
  const vb = await view(b);
  t.match(vb, { role: 'standby', vrrp_state: 'BACKUP', peer_connected: true, peer_role: 'active', fenced: false });

  // Failover under a ping every 20 ms: the gap is the longest silence between two replies.
  // Into a file: the process keeps only its last lines of output.
  const pingLog = join(lab.dir, 'ping.log');
  const pinger = lab.spawn('ping', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.02 -w 9 ${TUN_ADDR} > ${pingLog}`], { ns: nsP });
  await new Promise((r) => setTimeout(r, 1500));
  const killedAt = Date.now();
  a.signal('SIGKILL');
  await a.exited;
  await pinger.exited;
  const replies = readFileSync(pingLog, 'utf8')
    .split('\n')
    .map((l) => /^\[(\d+\.\d+)\] \d+ bytes from/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]) * 1000);
  let gap = 0;
  for (let i = 1; i < replies.length; i++) gap = Math.max(gap, (replies[i] as number) - (replies[i - 1] as number));
  const takeover = b.output().find((l) => /"role":"active"/.test(l.line));
  const takeoverMs = takeover ? (JSON.parse(takeover.line) as { at: number }).at - killedAt : NaN;
  t.comment(`failover: ping gap ${gap.toFixed(0)} ms, B active ${takeoverMs} ms after the kill, ${replies.length} replies`);
  const before = replies.filter((x) => x < killedAt).length;
  t.ok(before > 10 && replies.length - before > 10, `replies before (${before}) and after (${replies.length - before}) the kill`);
  t.ok(gap <= 3000, `traffic gap ${gap.toFixed(0)} ms <= 3000 ms`);
  t.ok(await hasVip(lab, nsB), 'the VIP moved to B');
  const hs1 = (await peer.show()).peers[0]?.latestHandshake ?? 0;
  t.equal(hs1, hs0, 'no new handshake: the same session continues');
  const initiations = (before = Infinity): string[] =>
    wireguardMessages(capture)
      .filter((m) => m.type === 1 && m.at < before && (m.srcMac === macA || m.srcMac === macB))
      .map((m) => `${m.srcMac === macA ? 'A' : 'B'} at ${(m.at - killedAt).toFixed(0)} ms after the kill`);
  t.same(initiations(), [], 'neither node initiated a handshake (the peer initiates)');
  t.match(await view(b), { role: 'active', vrrp_state: 'MASTER', takeovers: 1 });
  t.equal((await lab.exec(undefined, tools.ip, ['netns', 'pids', nsA])).stdout.trim(), '', "nothing of A survived, keepalived included (its parent-death signal)");

  // Rejoin: A comes back, VRRP keeps B (nopreempt), A is standby and resynced.
  a = start('a', nsA, haA);
  await a.waitReady({ line: 'ready', timeoutMs: 20_000 });
  let last: Record<string, unknown> = {};
  await until('A to be resynced', async () => (last = await view(a)).synced_wireguard_sessions === keypairs, 20_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
  await new Promise((r) => setTimeout(r, 1500));
  t.match(await view(a), { role: 'standby', peer_role: 'active' }, 'the old active rejoined as standby');
  t.match(await view(b), { role: 'active' }, 'no fail-back without preempt');
  t.notOk(await hasVip(lab, nsA), 'the VIP stays on B');

  t.same(initiations(Date.now()), [], 'after the rejoin: still no handshake initiation from either node');

  // Split brain 1: VRRP cut both ways, sync channel alive. A stops hearing B's adverts and claims
  // the VIP in VRRP, sees the live active B over the sync channel and fences itself. Its claim
  // announced the VIP (gratuitous ARP) and moved the peer's ARP entry to A; only B's next
  // announcement moves it back, so the peer pings throughout and its traffic must reach B again
  // within a bound.
  const vrrpCut = join(lab.dir, 'vrrp-cut.nft');
  writeFileSync(
    vrrpCut,
    'table inet hactl_vrrp {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ip protocol vrrp drop\n  }\n' +
      '  chain output {\n    type filter hook output priority 0; policy accept;\n    ip protocol vrrp drop\n  }\n}\n',
  );
  const splitPingLog = join(lab.dir, 'ping-split.log');
  const splitPinger = lab.spawn('ping split', 'sh', ['-c', `exec ${tools.ping} -D -n -i 0.05 ${TUN_ADDR} > ${splitPingLog}`], { ns: nsP });
  await new Promise((r) => setTimeout(r, 1000));
  const cutAt = Date.now();
  await lab.exec(nsA, tools.nft, ['-f', vrrpCut]);
  // keepalived adds the VIP before it reports MASTER, so A holds it until its fence is in
  // effect: the samples start once keepalived reported FAULT (it drops the VIP before that).
  await until('A fenced', async () => {
    const v = await view(a);
    return v.fenced === true && v.vrrp_state === 'FAULT';
  }, 8000);
  const samples: Array<[boolean, boolean]> = [];
  for (let i = 0; i < 15; i++) {
    samples.push([await hasVip(lab, nsA), await hasVip(lab, nsB)]);
    await new Promise((r) => setTimeout(r, 200));
  }
  const pingStoppedAt = Date.now();
  splitPinger.signal('SIGINT');
  await splitPinger.exited;
  const splitReplies = readFileSync(splitPingLog, 'utf8')
    .split('\n')
    .map((l) => /^\[(\d+\.\d+)\] \d+ bytes from/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]) * 1000);
  // The silence up to the end counts too: a misdirected peer gets no reply at all until repaired.
  const splitPoints = [...splitReplies.filter((x) => x < pingStoppedAt), pingStoppedAt];
  let splitGap = 0;
  for (let i = 1; i < splitPoints.length; i++) splitGap = Math.max(splitGap, (splitPoints[i] as number) - (splitPoints[i - 1] as number));
  const announced = arpAnnouncements(capture, VIP).filter((x) => x.at >= cutAt);
  const claim = announced.find((x) => x.srcMac === macA);
  const reannounce = claim && announced.find((x) => x.srcMac === macB && x.at > claim.at);
  const repairMs = claim && reannounce ? reannounce.at - claim.at : NaN;
  t.comment(`VRRP cut: A announced the VIP ${claim ? (claim.at - cutAt).toFixed(0) : '-'} ms after the cut, B again ${repairMs.toFixed(0)} ms later; peer's ping gap ${splitGap.toFixed(0)} ms, ${splitReplies.length} replies`);
  t.ok(claim, "A's claim announced the VIP (what moves the peer's ARP entry)");
  t.ok(repairMs <= 2000, `B announced the VIP again ${repairMs.toFixed(0)} ms after A's claim (<= 2000 ms: the 1 s refresh, checked at each 200 ms advert, on a loaded machine)`);
  t.ok(splitReplies.length > 20 && splitGap <= 2500, `the peer's traffic reached B throughout: longest gap ${splitGap.toFixed(0)} ms <= 2500 ms`);
  t.same(samples.filter(([x, y]) => x === y), [], 'VRRP cut: exactly one node holds the VIP at every sample');
  t.match(await view(a), { role: 'standby', fenced: true, fence_reason: 'peer-active', vrrp_state: 'FAULT' });
  t.match(await view(b), { role: 'active' });
  await lab.exec(nsA, tools.nft, ['delete', 'table', 'inet', 'hactl_vrrp']);
  // The fence holds while the sync channel shows the active peer (a FAULT node cannot tell whether
  // adverts pass again; lifting it to find out would put the VIP on both for a moment).
  await new Promise((r) => setTimeout(r, 1500));
  t.match(await view(a), { role: 'standby', fenced: true }, 'VRRP back: A stays fenced next to the active B');
  t.ok((await hasVip(lab, nsB)) && !(await hasVip(lab, nsA)), 'the VIP never moved');

  // Split brain 2: sync channel cut, VRRP alive: the fence lifts (no live active peer on the
  // channel any more), A returns to BACKUP, VRRP keeps B master; A stays passive.
  const syncCut = join(lab.dir, 'sync-cut.nft');
  writeFileSync(syncCut, 'table inet hactl_sync {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 4610 drop\n    tcp sport 4610 drop\n  }\n}\n');
  await lab.exec(nsA, tools.nft, ['-f', syncCut]);
  await until('A to lose the sync peer', async () => (await view(a)).peer_connected === false, 10_000);
  await until('A unfenced', async () => (await view(a)).fenced === false, 8000);
  const samples2: Array<[boolean, boolean]> = [];
  for (let i = 0; i < 10; i++) {
    samples2.push([await hasVip(lab, nsA), await hasVip(lab, nsB)]);
    await new Promise((r) => setTimeout(r, 200));
  }
  t.same(samples2.filter(([x, y]) => x === y), [], 'sync cut: exactly one node holds the VIP at every sample');
  t.match(await view(a), { role: 'standby', vrrp_state: 'BACKUP', fenced: false });
  t.match(await view(b), { role: 'active' });
  await lab.exec(nsA, tools.nft, ['delete', 'table', 'inet', 'hactl_sync']);

  await new Promise((r) => setTimeout(r, 500));
  await dump.stop();
  const sent = wireguardMessages(capture).filter((m) => m.type === 4 && (m.srcMac === macA || m.srcMac === macB));
  const seen = new Set<string>();
  const dup = sent.filter((m) => {
    const k = `${m.receiver}:${m.counter}`;
    if (seen.has(k)) return true;
    seen.add(k);
    return false;
  });
  t.ok(sent.length > 100, `captured ${sent.length} transport messages from the two nodes`);
  t.same(dup, [], 'no (receiver index, counter) pair sent twice');
  t.same(initiations(), [], 'neither node initiated a handshake in the whole run, both split brains included');
  await closeLab(t, lab);
});
