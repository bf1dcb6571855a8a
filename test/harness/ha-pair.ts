/**
 * The two-node lab of the active-passive tests: node A and node B, each in its own namespace,
 * on a bridge (in the peers' namespace) where the VIP floats between them; a sync key; the `[ha]`
 * TOML of each node; and what the tests read back: `vrouterctl ha --json`, who holds the VIP,
 * gaps in a `ping -D` log, and the WireGuard / ESP packets of a capture on the bridge.
 *
 *   nsA (node A, ethA 10.79.0.1) ──┐
 *   nsB (node B, ethB 10.79.0.2) ──┼── bridge in nsP (10.79.0.9) ── the peers; the VIP 10.79.0.100
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { vrouterRun, type VrouterRun } from './vrouter.js';
import { wireguardGo, genKeyPair, type WgInterface } from './wireguard.js';
import { strongswanPeer, type StrongswanPeer } from './strongswan.js';
import { REPO_ROOT } from './cvlan.js';
import { run } from './exec.js';
import { iperfServer, waitForPing } from './ping.js';
import { tools } from './tools.js';

export const HA_VIP = '10.79.0.100';
export const HA_NODE_A = '10.79.0.1';
export const HA_NODE_B = '10.79.0.2';
export const HA_BRIDGE = '10.79.0.9';
const CTL = join(REPO_ROOT, 'dist', 'src', 'cli', 'vrouterctl.js');

export interface HaPairLab {
  nsA: string;
  nsB: string;
  /** The peers' namespace, which holds the bridge. */
  nsP: string;
  bridge: string;
  /** Each node's interface on the bridge (keepalived's `interface`). */
  ethA: string;
  ethB: string;
  /** MAC addresses of ethA / ethB: who sent a captured frame. */
  macA: string;
  macB: string;
  /** The sync key file both nodes read (0600). */
  keyFile: string;
}

/** Namespaces, the bridge, both nodes' links, the sync key; `service` (when given) on both nodes' lo. */
export async function haPairLab(lab: Lab, o: { service?: string } = {}): Promise<HaPairLab> {
  const [nsA, nsB, nsP] = [await lab.namespace('a'), await lab.namespace('b'), await lab.namespace('p')];
  const br = await lab.bridge(nsP, { addresses: [`${HA_BRIDGE}/24`] });
  const [ethA, portA] = await lab.veth({ ns: nsA, addresses: [`${HA_NODE_A}/24`] }, { ns: nsP });
  const [ethB, portB] = await lab.veth({ ns: nsB, addresses: [`${HA_NODE_B}/24`] }, { ns: nsP });
  for (const p of [portA, portB]) {
    await lab.attach(p, br);
    await lab.ip(nsP, ['link', 'set', p.name, 'up']);
  }
  if (o.service) for (const ns of [nsA, nsB]) await lab.addAddress(ns, 'lo', `${o.service}/32`);
  const keyFile = join(lab.dir, 'ha.key');
  writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
  return { nsA, nsB, nsP, bridge: br.name, ethA: ethA.name, ethB: ethB.name, macA: await mac(lab, nsA, ethA.name), macB: await mac(lab, nsB, ethB.name), keyFile };
}

/** Another namespace on the bridge (a second peer), at `address`/24. */
export async function haPairPeerNamespace(lab: Lab, pair: HaPairLab, label: string, address: string): Promise<string> {
  const ns = await lab.namespace(label);
  const [, port] = await lab.veth({ ns, addresses: [`${address}/24`] }, { ns: pair.nsP });
  await lab.ip(pair.nsP, ['link', 'set', port.name, 'master', pair.bridge]);
  await lab.ip(pair.nsP, ['link', 'set', port.name, 'up']);
  return ns;
}

/** `[network]` (the VIP) and `[ha]` of node `id` (1 = A, 2 = B); A has the higher priority. */
export function haPairToml(pair: HaPairLab, id: 1 | 2, extra = ''): string {
  const [self, other, iface, priority] = id === 1 ? [HA_NODE_A, HA_NODE_B, pair.ethA, 150] : [HA_NODE_B, HA_NODE_A, pair.ethB, 100];
  return [
    '[network]',
    `listen_address = "${HA_VIP}"`,
    '',
    '[ha]',
    `node_id = ${id}`,
    `local_address = "${self}"`,
    `peer_address = "${other}"`,
    `interface = "${iface}"`,
    `vips = ["${HA_VIP}/24"]`,
    'virtual_router_id = 79',
    `priority = ${priority}`,
    'advert_interval_ms = 200',
    `sync_key_file = "${pair.keyFile}"`,
    'sync_port = 4611',
    'sync_interval_ms = 50',
    extra,
    '',
  ].join('\n');
}

/** `vrouterctl ha --json` of a running daemon. */
export async function haView(v: VrouterRun): Promise<Record<string, unknown>> {
  const r = await run(tools.node, [CTL, '--socket', v.admin, '--json', 'ha'], { timeoutMs: 20_000 });
  return (JSON.parse(r.stdout) as { ha: Record<string, unknown> }).ha;
}

export async function until(what: string, f: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function hasVip(lab: Lab, ns: string): Promise<boolean> {
  return (await lab.ip(ns, ['-o', 'addr'])).stdout.includes(` ${HA_VIP}/`);
}

async function mac(lab: Lab, ns: string, dev: string): Promise<string> {
  const r = await lab.ip(ns, ['-o', 'link', 'show', dev]);
  const m = /link\/ether ([0-9a-f:]+)/.exec(r.stdout);
  if (m?.[1] === undefined) throw new Error(`no MAC on ${dev}: ${r.stdout}`);
  return m[1];
}

/** Reply times (ms since the epoch) in the output of `ping -D -n`. */
export function pingReplies(logFile: string): number[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .map((l) => /^\[(\d+\.\d+)\] \d+ bytes from/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]) * 1000);
}

/** The longest interval between consecutive times (same unit as given); 0 for fewer than two. */
export function longestGap(times: readonly number[]): number {
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  return gap;
}

/** One encrypted packet on the wire: who sent it, and its (key, nonce) identity. */
export interface CapturedPacket {
  /** Milliseconds since the epoch. */
  at: number;
  srcMac: string;
  kind: 'wireguard' | 'esp';
  /** WireGuard: the receiver index; ESP: the SPI. */
  id: number;
  /** WireGuard: the counter; ESP: the sequence number (low 32 bits on the wire). */
  seq: bigint;
}

/**
 * WireGuard transport messages (type 4, from or to `wgPort`) and ESP packets (IP protocol 50, or
 * ESP-in-UDP on `natPort` — a non-zero first word, RFC 3948) in a pcap of Ethernet frames.
 */
export function capturedPackets(file: string, o: { wgPort: number; natPort?: number }): CapturedPacket[] {
  const natPort = o.natPort ?? 4500;
  const buf = readFileSync(file);
  const out: CapturedPacket[] = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (p: number): number => (le ? buf.readUInt32LE(p) : buf.readUInt32BE(p));
  for (let p = 24; p + 16 <= buf.length; ) {
    const at = u32(p) * 1e3 + u32(p + 4) / 1e3;
    const len = u32(p + 8);
    const f = buf.subarray(p + 16, p + 16 + len);
    p += 16 + len;
    if (f.length < 14 + 20 + 8 || f.readUInt16BE(12) !== 0x0800) continue;
    const ihl = ((f[14] as number) & 0x0f) * 4;
    const proto = f[14 + 9];
    const l4 = 14 + ihl;
    const srcMac = [...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    if (proto === 50) {
      if (f.length >= l4 + 8) out.push({ at, srcMac, kind: 'esp', id: f.readUInt32BE(l4), seq: BigInt(f.readUInt32BE(l4 + 4)) });
      continue;
    }
    if (proto !== 17 || f.length < l4 + 8) continue;
    const [sport, dport] = [f.readUInt16BE(l4), f.readUInt16BE(l4 + 2)];
    const payload = f.subarray(l4 + 8);
    if ((sport === o.wgPort || dport === o.wgPort) && payload.length >= 32 && payload[0] === 4) {
      for (const s of gsoSegments(payload, 32)) out.push({ at, srcMac, kind: 'wireguard', id: s.readUInt32LE(4), seq: s.readBigUInt64LE(8) });
    } else if ((sport === natPort || dport === natPort) && payload.length >= 8 && payload.readUInt32BE(0) !== 0) {
      for (const s of gsoSegments(payload, 24)) out.push({ at, srcMac, kind: 'esp', id: s.readUInt32BE(0), seq: BigInt(s.readUInt32BE(4)) });
    }
  }
  return out;
}

/**
 * The data plane sends with UDP GSO: on the veths and the bridge one captured datagram can carry
 * several messages of one size back to back, the last one shorter or equal (segmented only where
 * they are received). Every segment starts like the first (WireGuard: type and receiver index,
 * 8 bytes; ESP: the SPI): the segment size is the smallest at whose every multiple that prefix
 * appears again, to the end of the datagram.
 */
function gsoSegments(payload: Buffer, min: number): Buffer[] {
  const width = payload[0] === 4 ? 8 : 4;
  const head = payload.subarray(0, width);
  const at = (k: number): boolean => k + 8 <= payload.length && payload.subarray(k, k + width).equals(head);
  for (let size = min; size + 8 <= payload.length; size++) {
    if (!at(size)) continue;
    let k = size;
    while (k + 8 <= payload.length && at(k)) k += size;
    if (k >= payload.length) {
      const segs: Buffer[] = [];
      for (let o = 0; o + 8 <= payload.length; o += size) segs.push(payload.subarray(o, Math.min(o + size, payload.length)));
      return segs;
    }
  }
  return [payload];
}

/** Packets whose (kind, id, seq) appeared before in `packets`. */
export function repeatedNonces(packets: readonly CapturedPacket[]): CapturedPacket[] {
  const seen = new Set<string>();
  return packets.filter((m) => {
    const k = `${m.kind}:${m.id}:${m.seq}`;
    if (seen.has(k)) return true;
    seen.add(k);
    return false;
  });
}

/** On both nodes' lo: what the WireGuard agent reaches through its tunnel. */
export const HA_SERVICE = '10.99.0.1';
/** The pair's side of the IPsec tunnel (on both nodes' IPsec TUN) and the legacy router's. */
export const HA_OURS = { lan: '10.88.1.1', net: '10.88.1.0/24', id: 'pair.test.cvlan' };
export const HA_LEGACY = { lan: '10.88.2.1', net: '10.88.2.0/24', id: 'legacy.test.cvlan', addr: '10.79.0.8' };
/**
 * The agent's second inner address, inside the IPsec tunnel's local subnet: a flow from here to
 * the legacy router's LAN is translated by the pair, through the WireGuard tunnel and the IPsec
 * tunnel at once, between endpoints that outlive any node.
 */
export const HA_AGENT_LAN = '10.88.1.50';
export const HA_WG_PORT = 51820;

/** The identity of the strongSwan router's SAs in `swanctl --list-sas`: what must not change. */
export interface SaIds {
  ike: string;
  ikeState: string;
  child: string;
  childState: string;
}

export function saIds(listing: string): SaIds | undefined {
  const ike = /^\S+: #(\d+), (\w+), IKEv2, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r/m.exec(listing);
  const child = /^\s+\S+: #(\d+), reqid \d+, (\w+),/m.exec(listing);
  const spiIn = /^\s+in\s+([0-9a-f]{8})/m.exec(listing);
  const spiOut = /^\s+out\s+([0-9a-f]{8})/m.exec(listing);
  if (!ike || !child || !spiIn || !spiOut) return undefined;
  return { ike: `#${ike[1]} ${ike[3]}_i ${ike[4]}_r`, ikeState: ike[2]!, child: `#${child[1]} in ${spiIn[1]} out ${spiOut[1]}`, childState: child[2]! };
}

/** SPIs of the first CHILD_SA in a listing, as a set (the other side lists them swapped). */
export function childSpis(listing: string): string[] {
  return [/^\s+in\s+([0-9a-f]{8})/m.exec(listing)?.[1], /^\s+out\s+([0-9a-f]{8})/m.exec(listing)?.[1]].filter((x): x is string => x !== undefined).sort();
}

/** A node's charon as `swanctl --list-sas` shows it (its VICI socket is in the lab dir). */
export async function nodeSas(lab: Lab, v: VrouterRun): Promise<string> {
  return (await lab.exec(v.ns, tools.swanctl, ['--list-sas', '--uri', `unix://${v.charonVici}`])).stdout;
}

/** The pair with both tunnels up: A active, B standby holding the session and the SAs. */
export interface HaTunnelPair {
  pair: HaPairLab;
  /** The legacy IPsec router's namespace (on the bridge). */
  nsS: string;
  a: VrouterRun;
  b: VrouterRun;
  /** Starts node `id` again in `ns` (a rejoin). */
  start(ns: string, id: 1 | 2): Promise<VrouterRun>;
  agent: WgInterface;
  legacy: StrongswanPeer;
  /** tcpdump of the bridge: WireGuard, ESP-in-UDP and ESP, both directions; stop it before reading. */
  dump: LabProcess;
  capture: string;
  /** MAC addresses of the agent's and the legacy router's links (their packets in the capture). */
  macAgent: string;
  macLegacy: string;
  /** The agent's keypairs the active holds and the standby synced (1, or 2 after a retransmit). */
  keypairs: number;
}

/**
 * Two `cvlan-vrouter run` with `[ha]` and the same document (one WireGuard peer, one IPsec tunnel,
 * responder), a wireguard-go agent and a strongSwan router (kernel-libipsec, initiating to the VIP,
 * ESP-in-UDP, DPD every 2 s) on the bridge, a capture of the bridge running: returns once both
 * tunnels carry pings and the standby holds the WireGuard session, the ESP SAs and the PASSIVE
 * IKE_SA.
 */
export async function haTunnelPair(lab: Lab, label: string): Promise<HaTunnelPair> {
  const pair = await haPairLab(lab, { service: HA_SERVICE });
  const { nsA, nsB, nsP } = pair;
  const nsS = await haPairPeerNamespace(lab, pair, 's', HA_LEGACY.addr);
  await lab.addAddress(nsS, 'lo', `${HA_LEGACY.lan}/32`);

  const [node, agentKeys] = [await genKeyPair(), await genKeyPair()];
  const psk = randomBytes(24).toString('base64');
  const doc = {
    vrouter_id: 'vr',
    tenant_id: 'acme',
    wireguard: { listen_port: HA_WG_PORT, private_key: node.privateKey },
    wireguard_peers: [{ name: 'agent', public_key: agentKeys.publicKey, allowed_ips: ['10.98.0.2/32', `${HA_AGENT_LAN}/32`] }],
    tunnels: [
      {
        id: 'legacy',
        type: 'ipsec',
        local_id: HA_OURS.id,
        remote_id: HA_LEGACY.id,
        auth: { method: 'psk', psk },
        local_subnets: [HA_OURS.net],
        remote_subnets: [HA_LEGACY.net],
        proposals: { ike: ['aes256gcm16-prfsha256-ecp256'], esp: ['aes256gcm16'] },
      },
    ],
  };
  const start = async (ns: string, id: 1 | 2): Promise<VrouterRun> => {
    const v = await vrouterRun(lab, ns, { document: doc, logLevel: 'info', privateRun: true, extraToml: haPairToml(pair, id) });
    await lab.addAddress(ns, v.ready.ipsec!.interface, `${HA_OURS.lan}/32`);
    return v;
  };

  const a = await start(nsA, 1);
  await until('A active', async () => (await haView(a)).role === 'active');
  const b = await start(nsB, 2);
  await until('B standby with the peer connected', async () => {
    const v = await haView(b);
    return v.role === 'standby' && v.peer_connected === true;
  });

  const capture = join(lab.dir, `${label}.pcap`);
  const dump = lab.spawn('tcpdump', 'tcpdump', ['-i', pair.bridge, '-U', '--immediate-mode', '-n', '-w', capture, `udp port ${HA_WG_PORT} or udp port 4500 or esp`], {
    ns: nsP,
  });
  await new Promise((r) => setTimeout(r, 500));

  const agent = await wireguardGo(lab, nsP, {
    keys: agentKeys,
    addresses: ['10.98.0.2/24', `${HA_AGENT_LAN}/32`],
    peers: [{ publicKey: node.publicKey, endpoint: `${HA_VIP}:${HA_WG_PORT}`, allowedIps: [`${HA_SERVICE}/32`, HA_LEGACY.net] }],
    routes: [`${HA_SERVICE}/32`, HA_LEGACY.net],
  });
  const legacy = await strongswanPeer(lab, nsS, {
    localAddr: HA_LEGACY.addr,
    remoteAddr: HA_VIP,
    localId: HA_LEGACY.id,
    remoteId: HA_OURS.id,
    localTs: [HA_LEGACY.net],
    remoteTs: [HA_OURS.net],
    auth: { method: 'psk', psk },
    ikeProposals: 'aes256gcm16-prfsha256-ecp256',
    espProposals: 'aes256gcm16',
    forceEncap: true,
    dpdDelay: '2s',
  });
  await legacy.initiate(20);
  await waitForPing(nsP, HA_SERVICE, 15_000);
  await waitForPing(nsS, HA_OURS.lan, 15_000, HA_LEGACY.lan);

  await settleWireguardGo(agent);
  // The standby: charon holds the IKE_SA PASSIVE (its ha plugin, relayed through the sync
  // channel) and installed the CHILD_SA through our kernel plugin into its passive data plane;
  // its data plane holds every keypair of the agent the active holds.
  let keypairs = 0;
  await until('the standby to hold the session and the SAs', async () => {
    keypairs = Number((await haView(a)).synced_wireguard_sessions);
    const v = await haView(b);
    return keypairs >= 1 && v.synced_wireguard_sessions === keypairs && Number(v.synced_esp_sas) >= 2 && / PASSIVE, /.test(await nodeSas(lab, b));
  });
  // wireguard-go runs in the bridge's namespace: its datagrams leave from the bridge.
  return { pair, nsS, a, b, start, agent, legacy, dump, capture, macAgent: await mac(lab, nsP, pair.bridge), macLegacy: await linkMac(lab, nsS), keypairs };
}

/**
 * Returns once wireguard-go can no longer start a handshake of its own: it arms its retransmit
 * timer after the initiation's send returns, so when the response was processed first (a fast
 * answer on a loaded machine) the timer survives and it handshakes again REKEY_TIMEOUT (5 s, +
 * up to 1/3 s jitter) later, whoever holds the VIP (docs/ha.md). Tests that assert "no new
 * handshake" read the latest handshake after this, and count the keypairs it may have added.
 */
export async function settleWireguardGo(agent: WgInterface): Promise<void> {
  const first = (await agent.show()).peers[0]?.latestHandshake ?? 0;
  // latestHandshake has whole seconds: one more for the rounding.
  const end = first * 1000 + 5_333 + 1_000;
  if (first > 0 && end > Date.now()) await new Promise((r) => setTimeout(r, end - Date.now()));
}

/** The MAC of the one Ethernet link in `ns` (a peer namespace made by haPairPeerNamespace). */
async function linkMac(lab: Lab, ns: string): Promise<string> {
  const m = /link\/ether ([0-9a-f:]+)/.exec((await lab.ip(ns, ['-o', 'link', 'show'])).stdout);
  if (m?.[1] === undefined) throw new Error(`no Ethernet link in ${ns}`);
  return m[1];
}

/** One direction of the translated flow: an iperf3 UDP client run with `-R`, so it is the receiver. */
export interface IperfFlow {
  what: string;
  process: LabProcess;
  /** Its `-J` report (written when it ends). */
  json: string;
  /** When the client was started, ms since the epoch (iperf3's own timestamp has whole seconds). */
  startedAt: number;
  /** Datagrams per second the sender aims at. */
  rate: number;
}

/**
 * iperf3 UDP at `bitrate` through both tunnels, one flow per direction, for `seconds`: a server
 * on one end, a client on the other that asks it to send (`-R`) and reports what it received
 * every 0.1 s. The agent's flow enters the pair through WireGuard and leaves through ESP, and
 * the other way round.
 */
export async function translatedIperf(lab: Lab, t: HaTunnelPair, o: { seconds: number; bitrate?: number }): Promise<IperfFlow[]> {
  const rate = String(o.bitrate ?? 2_000_000);
  const ends = [
    { what: 'router → agent (ESP in, WireGuard out)', server: [t.nsS, HA_LEGACY.lan], client: [t.pair.nsP, HA_AGENT_LAN], port: 5301 },
    { what: 'agent → router (WireGuard in, ESP out)', server: [t.pair.nsP, HA_AGENT_LAN], client: [t.nsS, HA_LEGACY.lan], port: 5302 },
  ] as const;
  const flows: IperfFlow[] = [];
  for (const e of ends) {
    await iperfServer(lab, e.server[0], { port: e.port, bind: e.server[1] });
    const json = join(lab.dir, `iperf-${e.port}.json`);
    const args = ['-c', e.server[1], '-B', e.client[1], '-p', String(e.port), '-u', '-b', rate, '-l', '1200', '-R', '-t', String(o.seconds), '-i', '0.1', '-J'];
    flows.push({ what: e.what, json, startedAt: Date.now(), rate: Number(rate) / (1200 * 8), process: lab.spawn(`iperf3 ${e.port}`, 'sh', ['-c', `exec ${tools.iperf3} ${args.join(' ')} > ${json}`], { ns: e.client[0] }) });
  }
  return flows;
}

/** What a flow's receiver saw: datagrams, and its longest silence in 0.1 s intervals. */
export interface IperfSilence {
  /** Datagrams received (bytes over the 1200-byte payload). */
  datagrams: number;
  lostPercent: number;
  /** The datagrams lost, as time at the sender's rate, ms: the gap when they were lost in one run. */
  lostMs: number;
  intervals: number;
  /** Total length of the longest run of intervals that received nothing, ms. */
  silentMs: number;
  /** When that run began, ms since the epoch (0 when none). */
  silentFrom: number;
  /**
   * Upper bound of the gap between two received datagrams around that run: the run plus the
   * intervals on either side (a datagram can have arrived at the very start of the one before).
   */
  gapBoundMs: number;
  error?: string;
}

interface IperfJson {
  error?: string;
  intervals?: Array<{ sum: { start: number; end: number; seconds: number; bytes: number } }>;
  end?: { sum?: { lost_percent?: number; lost_packets?: number } };
}

/** A flow's report; `silentFrom` counts from the client's start (its control exchange adds some ms). */
export function iperfSilence(flow: IperfFlow): IperfSilence {
  const j = JSON.parse(readFileSync(flow.json, 'utf8')) as IperfJson;
  const iv = (j.intervals ?? []).map((i) => i.sum);
  const t0 = flow.startedAt;
  let best = { len: 0, from: -1, to: -1 };
  for (let i = 0; i < iv.length; ) {
    if (iv[i]!.bytes > 0) {
      i++;
      continue;
    }
    let k = i;
    let len = 0;
    while (k < iv.length && iv[k]!.bytes === 0) len += iv[k++]!.seconds * 1000;
    if (len > best.len) best = { len, from: i, to: k - 1 };
    i = k;
  }
  const side = (n: number): number => iv[n]?.seconds ?? 0;
  return {
    datagrams: Math.round(iv.reduce((s, i) => s + i.bytes, 0) / 1200),
    lostPercent: j.end?.sum?.lost_percent ?? 100,
    lostMs: ((j.end?.sum?.lost_packets ?? 0) / flow.rate) * 1000,
    intervals: iv.length,
    silentMs: best.len,
    silentFrom: best.from < 0 ? 0 : t0 + iv[best.from]!.start * 1000,
    gapBoundMs: best.from < 0 ? 2 * side(0) * 1000 : best.len + (side(best.from - 1) + side(best.to + 1)) * 1000,
    ...(j.error !== undefined ? { error: j.error } : {}),
  };
}

/** Every process under `pid` (charon, keepalived, their wrappers), children before parents. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      walk(c);
      out.push(c);
    }
  };
  walk(pid);
  return out;
}

/** SIGKILLs `pid` and everything under it in one go (no handler runs anywhere); returns when, ms since the epoch. */
export function killTree(pid: number): number {
  const tree = [pid, ...descendants(pid)];
  const at = Date.now();
  for (const p of tree) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return at;
}
