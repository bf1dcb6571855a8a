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
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './lab.js';
import type { VrouterRun } from './vrouter.js';
import { REPO_ROOT } from './cvlan.js';
import { run } from './exec.js';
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
      out.push({ at, srcMac, kind: 'wireguard', id: payload.readUInt32LE(4), seq: payload.readBigUInt64LE(8) });
    } else if ((sport === natPort || dport === natPort) && payload.length >= 8 && payload.readUInt32BE(0) !== 0) {
      out.push({ at, srcMac, kind: 'esp', id: payload.readUInt32BE(0), seq: BigInt(payload.readUInt32BE(4)) });
    }
  }
  return out;
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
