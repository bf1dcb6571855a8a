/**
 * Userspace WireGuard peers nobody here wrote: wireguard-go and boringtun, configured with the `wg`
 * tool over the cross-platform UAPI socket. That socket lives at /var/run/wireguard/<ifname>.sock,
 * which is not per network namespace: hence the random interface names.
 */
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { LabError } from './errors.js';
import { run } from './exec.js';
import { tools } from './tools.js';
import { CVLAN_CLI } from './cvlan.js';

export const WG_RUN_DIR = '/var/run/wireguard';

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

/** A key pair from `wg genkey` / `wg pubkey`. */
export async function genKeyPair(): Promise<KeyPair> {
  const privateKey = (await run(tools.wg, ['genkey'])).stdout.trim();
  const publicKey = (await run(tools.wg, ['pubkey'], { input: `${privateKey}\n` })).stdout.trim();
  return { privateKey, publicKey };
}

/** A preshared key from `wg genpsk`. */
export async function genPsk(): Promise<string> {
  return (await run(tools.wg, ['genpsk'])).stdout.trim();
}

export interface WgPeer {
  publicKey: string;
  /** `host:port`; IPv6 as `[addr]:port`. Omit for a peer that only connects to us. */
  endpoint?: string;
  allowedIps: string[];
  presharedKey?: string;
  /** Seconds; 0 or undefined = off. */
  persistentKeepalive?: number;
}

export interface WgOptions {
  /** Interface name; default a unique `wg<suffix>`. */
  name?: string;
  /** Base64 private key; default a fresh one. */
  keys?: KeyPair;
  /** UDP listen port. Default 51820. */
  listenPort?: number;
  /** Interface addresses in CIDR form. */
  addresses?: string[];
  /** Extra destinations routed into the interface (the addresses' own prefixes are implicit). */
  routes?: string[];
  peers?: WgPeer[];
  /** Interface MTU, bytes. Default 1420. */
  mtu?: number;
  /** boringtun worker threads (`-t`). Default 2 (this is a 2-vCPU machine). */
  threads?: number;
  /** Extra environment for the daemon (e.g. LOG_LEVEL=verbose for wireguard-go). */
  env?: Record<string, string>;
  /** Readiness timeout, ms. Default 10 000. */
  timeoutMs?: number;
}

export type WgImplementation = 'wireguard-go' | 'boringtun' | 'cvlan';

export interface WgInterface {
  impl: WgImplementation;
  ns: string;
  name: string;
  keys: KeyPair;
  listenPort: number;
  process: LabProcess;
  /** Adds or updates a peer with `wg set`. */
  setPeer(peer: WgPeer): Promise<void>;
  show(): Promise<WgShow>;
}

export interface WgShowPeer {
  publicKey: string;
  endpoint: string | undefined;
  allowedIps: string[];
  /** Unix seconds of the last handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number;
}

export interface WgShow {
  publicKey: string;
  listenPort: number;
  peers: WgShowPeer[];
}

/**
 * The raw UAPI `get=1` answer as key/value pairs in order. Path sockets are not bound to a network
 * namespace, so the harness can talk to any of its peers from where it runs.
 */
export function uapiGet(ifname: string, timeoutMs = 5000): Promise<[string, string][]> {
  return new Promise((resolve, reject) => {
    const sock = connect(`${WG_RUN_DIR}/${ifname}.sock`);
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new LabError('CVLAN_LAB_TIMEOUT', `UAPI get on ${ifname}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      data += chunk;
      if (data.endsWith('\n\n')) sock.end();
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new LabError('CVLAN_LAB_COMMAND', `UAPI get on ${ifname}: ${err.message}`, { cause: err }));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(
        data
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]),
      );
    });
    sock.write('get=1\n\n');
  });
}

/**
 * Parses `wg show <if> dump`. boringtun's UAPI leaves out the private key and handshake times
 * that `wg` derives its public key and "latest handshake" from, so those gaps are filled from
 * boringtun's own `own_public_key` and the peers' raw `last_handshake_time_sec`.
 */
export async function wgShow(ns: string | undefined, ifname: string): Promise<WgShow> {
  const show = await wgShowDump(ns, ifname);
  // A real Unix time is far above 1e9; anything smaller is "never" or boringtun's elapsed time.
  const unreal = (t: number): boolean => t < 1e9;
  if (show.publicKey === '(none)' || show.peers.some((p) => unreal(p.latestHandshake))) {
    const kv = await uapiGet(ifname);
    const own = kv.find(([k]) => k === 'own_public_key')?.[1];
    if (show.publicKey === '(none)' && own !== undefined) show.publicKey = Buffer.from(own, 'hex').toString('base64');
    let peer: WgShowPeer | undefined;
    let sec = 0;
    for (const [k, v] of kv) {
      if (k === 'public_key') peer = show.peers.find((p) => p.publicKey === Buffer.from(v, 'hex').toString('base64'));
      else if (k === 'last_handshake_time_sec') sec = Number(v);
      else if (k === 'last_handshake_time_nsec' && peer !== undefined && unreal(peer.latestHandshake)) {
        // boringtun 0.7 reports the time elapsed since the handshake here, not a Unix time
        // (which `wg show dump` passes through as a tiny "Unix time"): convert it to one.
        const nsec = Number(v);
        if (sec >= 1e9) peer.latestHandshake = sec;
        else if (sec > 0 || nsec > 0) peer.latestHandshake = Math.floor(Date.now() / 1000) - sec;
      }
    }
  }
  return show;
}

async function wgShowDump(ns: string | undefined, ifname: string): Promise<WgShow> {
  const r = await run(tools.wg, ['show', ifname, 'dump'], { ns });
  const [head, ...rest] = r.stdout.trim().split('\n');
  const h = head?.split('\t') ?? [];
  if (h.length < 3) throw new LabError('CVLAN_LAB_PARSE', `wg show ${ifname} dump: ${r.stdout}`);
  return {
    publicKey: h[1] as string,
    listenPort: Number(h[2]),
    peers: rest.map((line) => {
      const f = line.split('\t');
      return {
        publicKey: f[0] as string,
        endpoint: f[2] === '(none)' ? undefined : f[2],
        allowedIps: f[3] === '(none)' || f[3] === undefined ? [] : f[3].split(','),
        latestHandshake: Number(f[4]),
        rxBytes: Number(f[5]),
        txBytes: Number(f[6]),
        persistentKeepalive: f[7] === 'off' ? 0 : Number(f[7]),
      };
    }),
  };
}

async function setPeer(lab: Lab, ns: string, ifname: string, peer: WgPeer): Promise<void> {
  const args = ['set', ifname, 'peer', peer.publicKey, 'allowed-ips', peer.allowedIps.join(',')];
  if (peer.endpoint !== undefined) args.push('endpoint', peer.endpoint);
  if (peer.persistentKeepalive !== undefined) args.push('persistent-keepalive', String(peer.persistentKeepalive));
  if (peer.presharedKey !== undefined) {
    args.push('preshared-key', lab.writeFile(`${ifname}-psk-${peer.publicKey.slice(0, 8).replace(/[^A-Za-z0-9]/g, '_')}`, `${peer.presharedKey}\n`));
  }
  await run(tools.wg, args, { ns });
}

async function bringUp(lab: Lab, impl: WgImplementation, ns: string, opts: WgOptions): Promise<WgInterface> {
  const name = opts.name ?? lab.ifname('wg');
  const keys = opts.keys ?? (await genKeyPair());
  const listenPort = opts.listenPort ?? 51820;
  const sock = `${WG_RUN_DIR}/${name}.sock`;
  // Registered before the daemon so it runs after the daemon is stopped: a SIGKILLed daemon
  // leaves its socket behind, and the next `wg` call for that name would hang on it.
  lab.onTeardown(`remove ${sock}`, () => rmSync(sock, { force: true }));
  const process =
    impl === 'cvlan'
      ? lab.spawn(
          `cvlan-vrouter wireguard ${name}`,
          tools.node,
          [CVLAN_CLI, 'wireguard', '--foreground', name, '--listen-port', String(listenPort), '--workers', String(opts.threads ?? 2)],
          { ns, env: opts.env ?? {} },
        )
      : impl === 'wireguard-go'
      ? lab.spawn(`wireguard-go ${name}`, tools.wireguardGo, ['-f', name], { ns, env: opts.env ?? {} })
      : lab.spawn(
          `boringtun ${name}`,
          tools.boringtun,
          ['-f', '--disable-drop-privileges', '-t', String(opts.threads ?? 2), '-l', `${lab.dir}/${name}.log`, name],
          { ns, env: opts.env ?? {} },
        );
  await process.waitReady({ socket: sock, timeoutMs: opts.timeoutMs ?? 10_000 });
  const keyFile = lab.writeFile(`${name}.key`, `${keys.privateKey}\n`);
  await run(tools.wg, ['set', name, 'listen-port', String(listenPort), 'private-key', keyFile], { ns });
  for (const peer of opts.peers ?? []) await setPeer(lab, ns, name, peer);
  await lab.ip(ns, ['link', 'set', name, 'mtu', String(opts.mtu ?? 1420)]);
  for (const cidr of opts.addresses ?? []) await lab.addAddress(ns, name, cidr);
  await lab.ip(ns, ['link', 'set', name, 'up']);
  for (const dest of opts.routes ?? []) await lab.addRoute(ns, dest, { dev: name });
  return {
    impl,
    ns,
    name,
    keys,
    listenPort,
    process,
    setPeer: (peer) => setPeer(lab, ns, name, peer),
    show: () => wgShow(ns, name),
  };
}

/** wireguard-go (`CVLAN_WIREGUARD_GO`) on a fresh interface in `ns`. */
export function wireguardGo(lab: Lab, ns: string, opts: WgOptions = {}): Promise<WgInterface> {
  return bringUp(lab, 'wireguard-go', ns, opts);
}

/** cvlan-vrouter's own userspace WireGuard (`cvlan-vrouter wireguard IFNAME`) in `ns`. */
export function cvlanWireguard(lab: Lab, ns: string, opts: WgOptions = {}): Promise<WgInterface> {
  return bringUp(lab, 'cvlan', ns, opts);
}

/** boringtun-cli (`CVLAN_BORINGTUN`) on a fresh interface in `ns`. */
export function boringtun(lab: Lab, ns: string, opts: WgOptions = {}): Promise<WgInterface> {
  return bringUp(lab, 'boringtun', ns, opts);
}

export interface WgPairOptions {
  /** Underlay addresses of A and B (their WireGuard endpoints). */
  underlay: [string, string];
  /** Inner addresses (CIDR) of A and B. */
  inner: [string, string];
  /** Optional IPv6 inner addresses (CIDR) of A and B, configured with the IPv4 ones. */
  inner6?: [string, string];
  mtu?: number;
  psk?: boolean;
  keepalive?: number;
}

/**
 * Two WireGuard peers, `a` in `nsA` and `b` in `nsB`, each allowing the other's inner address.
 * `make` picks the implementation per side, so cross-implementation pairs are one call.
 */
export async function wgPair(
  lab: Lab,
  [nsA, nsB]: [string, string],
  [makeA, makeB]: [typeof wireguardGo, typeof wireguardGo],
  o: WgPairOptions,
): Promise<[WgInterface, WgInterface]> {
  const [ka, kb] = await Promise.all([genKeyPair(), genKeyPair()]);
  const psk = o.psk ? await genPsk() : undefined;
  const host = (cidr: string): string => `${cidr.split('/')[0] as string}/${cidr.includes(':') ? 128 : 32}`;
  const ep = (addr: string): string => (addr.includes(':') ? `[${addr}]:51820` : `${addr}:51820`);
  // Each side's peer is configured in one `wg set`: boringtun 0.7 cannot modify an existing peer.
  const addrs = (i: 0 | 1): string[] => [o.inner[i], ...(o.inner6 ? [o.inner6[i]] : [])];
  const extra = { ...(psk !== undefined ? { presharedKey: psk } : {}), ...(o.keepalive !== undefined ? { persistentKeepalive: o.keepalive } : {}) };
  const a = await makeA(lab, nsA, {
    keys: ka,
    addresses: addrs(0),
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    peers: [{ publicKey: kb.publicKey, endpoint: ep(o.underlay[1]), allowedIps: addrs(1).map(host), ...extra }],
  });
  const b = await makeB(lab, nsB, {
    keys: kb,
    addresses: addrs(1),
    ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
    peers: [{ publicKey: ka.publicKey, endpoint: ep(o.underlay[0]), allowedIps: addrs(0).map(host), ...extra }],
  });
  return [a, b];
}
