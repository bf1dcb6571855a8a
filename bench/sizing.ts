/**
 * Sizing benchmark (issue 17): how the control plane holds up with N IPsec tunnels and N
 * WireGuard peers, each next to its reference (plain strongSwan, wireguard-go) in the same run.
 * Not a timed test; run as root on a quiet machine (state the load average with the figures):
 *
 *   npx tsc -p tsconfig.json && node dist/bench/sizing.js --tunnels 100,500 \
 *     [--systems ipsec,wireguard,both,strongswan,wireguard-go] [--peer per-tunnel|shared] [--no-write] \
 *     [--label x] [--log-level debug] [--idle-s 30] [--dpd-s 30] [--reference-tables]
 *
 * Topology: `cvlan-vrouter run` in namespace A initiates N site-to-site tunnels (PSK, one per
 * tunnel, distinct remote identities and remote /24s) to one strongSwan charon with
 * kernel-libipsec in namespace B that holds N + 1 matching connections (`--peer per-tunnel`,
 * default) or one connection for all and N + 1 secrets by identity (`--peer shared`). Per N it
 * measures:
 *   - ready_s: daemon spawned → every tunnel `up` in GET /v1/tunnels;
 *   - bring_up_cpu_s: CPU of node, its charon and the peer's charon until then (what the
 *     benchmark's own responder costs apart from the vrouter);
 *   - rss_mib: VmRSS of the daemon (node) and of its charon once all tunnels are up (the peak:
 *     bring-up's garbage is still mapped); rss_settled_mib: the same after the idle window;
 *   - idle_cpu_pct: CPU of node and of charon over `--idle-s` (default 30 s: one period of the
 *     tunnels' 30 s DPD, so every IKE_SA's liveness check falls into it once) from 5 s after all
 *     were up (% of one core);
 *   - reload_applied_s / reload_up_s: one tunnel added by SIGHUP → `config_applied` logged /
 *     the new tunnel `up`;
 *   - scrape_ms: GET /metrics (median of 5);
 *   - stop_s: SIGTERM → the daemon (and its charon) gone.
 *
 * Both (`both`): one daemon holding the N IPsec tunnels and N WireGuard peers at once, measured as
 * `ipsec` is, after every WireGuard peer's handshake is answered too (wireguard_answered,
 * wireguard_ready_s); the reload adds one IPsec tunnel.
 *
 * WireGuard (`wireguard`): the daemon with one tenant of N peers (no IPsec); the peers are one
 * process in namespace B (`wg-handshakes.ts`) sending each peer's real handshake initiation until
 * answered. ready_s: daemon spawned → every peer's handshake answered; the rest as for IPsec
 * (reload: one peer added, its handshake answered).
 *
 * References, configured the way their own documentation does it: `strongswan` is a plain charon
 * with kernel-libipsec in namespace A holding the same N connections and PSKs
 * (`start_action = start`, stock settings but the same `dpd_delay` as our tunnels; with
 * `--reference-tables` also our IKE_SA table settings), against the same peer; `wireguard-go` gets the same N
 * peers by one `wg addconf` and the same handshakes. For them: time to all up, RSS, idle CPU.
 *
 * Results go to bench/results/sizing-<timestamp>.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageExit } from './cli.js';
import { adminGet } from '../src/api/client.js';
import { charonSettings } from '../src/strongswan/scale.js';
import { withLab, type Lab } from '../test/harness/lab.js';
import { twoHosts } from '../test/harness/topology.js';
import { strongswanPeer } from '../test/harness/strongswan.js';
import { vrouterRun, type VrouterRun } from '../test/harness/vrouter.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../test/harness/cvlan.js';
import { missingPrerequisites } from '../test/harness/tools.js';
import { sleep } from '../test/harness/exec.js';
import { ViciClient } from '../src/strongswan/vici/client.js';
import { run } from '../test/harness/exec.js';
import { tools } from '../test/harness/tools.js';
import { wireguardGo } from '../test/harness/wireguard.js';
import { wgKeyPair } from './wg-handshakes.js';

const OURS_ID = 'ours.sizing.cvlan';
const OURS_NET = '10.88.1.0/24';
/** Tunnel i's remote /24: 10.128.0.0/24, 10.128.1.0/24, … (up to 32768 tunnels). */
const remoteNet = (i: number): string => `10.${128 + (i >> 8)}.${i & 255}.0/24`;
const peerId = (i: number): string => `peer${i}.sizing.cvlan`;

interface Figures {
  tunnels: number;
  /** `both`: WireGuard peers in the same daemon (0 for `ipsec`). */
  wireguard_peers: number;
  /** `both`: their handshakes answered, and when the last was (s from spawn). */
  wireguard_answered: number | null;
  wireguard_ready_s: number | null;
  peer_shape: PeerShape;
  /** CPU time until all up (or the deadline), s. */
  bring_up_cpu_s: { peer_charon: number | null; node: number; charon: number | null };
  ready_s: number | null;
  /** 99 % of the tunnels up. */
  ready_99_s: number | null;
  up: number;
  /** Tunnels charon itself lists as up when the wait ended. */
  charon_up: number;
  not_up: [string, string][];
  rss_mib: { node: number; charon: number; total: number };
  rss_settled_mib: { node: number; charon: number; total: number };
  idle_cpu_pct: { node: number; charon: number };
  reload_applied_s: number | null;
  reload_up_s: number | null;
  scrape_ms: number;
  metrics_bytes: number;
  stop_s: number;
  loadavg_1m: { before: number; after: number };
}

const CLK_TCK = 100;

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function rssMib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** The daemon's charon: its child process named `charon`. */
function childCharon(pid: number): number | undefined {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  for (const k of kids) {
    try {
      if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'charon') return k;
      const deeper = childCharon(k);
      if (deeper !== undefined) return deeper;
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

function tunnel(i: number, psk: string, legacyAddr: string): object {
  return {
    id: `t${i}`,
    type: 'ipsec',
    local_id: OURS_ID,
    remote_id: peerId(i),
    remote_address: legacyAddr,
    auth: { method: 'psk', psk },
    local_subnets: [OURS_NET],
    remote_subnets: [remoteNet(i)],
    proposals: { ike: ['aes256gcm16-prfsha256-x25519'], esp: ['aes256gcm16'] },
    ...(dpdDelayS !== undefined ? { dpd_delay: dpdDelayS } : {}),
  };
}

async function upCount(ours: VrouterRun): Promise<{ up: number; states: Record<string, string> }> {
  const r = await adminGet({ kind: 'unix', socketPath: ours.admin }, '/v1/tunnels', 30_000);
  const tunnels = (JSON.parse(r.body) as { tunnels: { id: string; state: string }[] }).tunnels;
  return { up: tunnels.filter((t) => t.state === 'up').length, states: Object.fromEntries(tunnels.map((t) => [t.id, t.state])) };
}

/**
 * How the peer's charon holds the N + 1 responder sites: `per-tunnel`, one connection (identity,
 * traffic selectors) each; `shared`, one connection for all that answers any identity it is asked
 * for (`local.id = %any`: the initiator's IDr becomes its own) and narrows one wide selector to the
 * /24 each initiator proposes. Secrets are per site, by identity, in both.
 */
type PeerShape = 'per-tunnel' | 'shared';

/** The charon process of a peer started by the harness (itself, or its child). */
function charonOf(pid: number): number | undefined {
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'charon') return pid;
  } catch {
    return undefined;
  }
  return childCharon(pid);
}

/** The IPsec peer in namespace B: one charon answering N + 1 sites. */
async function ipsecPeer(
  lab: Lab,
  n: number,
  log: (s: string) => void,
  shape: PeerShape,
): Promise<{ h: Awaited<ReturnType<typeof twoHosts>>; psks: string[]; charonPid: number | undefined }> {
  const h = await twoHosts(lab);
  const psks = Array.from({ length: n + 1 }, () => randomBytes(24).toString('base64'));
  const shared = `  shared {
    version = 2
    local_addrs = ${h.addrB}
    remote_addrs = ${h.addrA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    local {
      auth = psk
      id = %any
    }
    remote {
      auth = psk
      id = ${OURS_ID}
    }
    children {
      shared {
        local_ts = 10.128.0.0/9
        remote_ts = ${OURS_NET}
        esp_proposals = aes256gcm16
      }
    }
  }
`;
  // Per tunnel: one charon holding N + 1 responder connections told apart by identity.
  const conns = shape === 'shared' ? shared : psks
    .map(
      (psk, i) => `  p${i} {
    version = 2
    local_addrs = ${h.addrB}
    remote_addrs = ${h.addrA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    local {
      auth = psk
      id = ${peerId(i)}
    }
    remote {
      auth = psk
      id = ${OURS_ID}
    }
    children {
      p${i} {
        local_ts = ${remoteNet(i)}
        remote_ts = ${OURS_NET}
        esp_proposals = aes256gcm16
      }
    }
  }
`,
    )
    .join('');
  // As hex: swanctl would decode a secret that happens to start with 0s (base64) or 0x (hex), and
  // 1 in 2048 random base64 PSKs does (a tunnel refused at 2000 for that, t1465 in one run).
  const secrets = psks.map((psk, i) => `  ike-p${i} {\n    id-1 = ${peerId(i)}\n    id-2 = ${OURS_ID}\n    secret = 0x${Buffer.from(psk).toString('hex')}\n  }\n`).join('');
  // kernel-libipsec routes each CHILD_SA's remote side from an address inside its local side,
  // which charon finds in its address cache. Added before charon starts (it reads them all at
  // start): added after, 2000 RTM_NEWADDR events at once overflowed its netlink socket, the
  // addresses past the first ~200 stayed unknown, and every CHILD_SA of theirs was refused
  // ("error installing route with policy"), for good.
  const batch = lab.writeFile('peer-addrs.batch', psks.map((_, i) => `address add ${remoteNet(i).replace('.0/24', '.1/32')} dev lo\n`).join(''));
  await lab.ip(h.b, ['-batch', batch]);
  const legacy = await strongswanPeer(lab, h.b, {
    localAddr: h.addrB,
    remoteAddr: h.addrA,
    localTs: [remoteNet(0)],
    remoteTs: [OURS_NET],
    auth: { method: 'psk', psk: psks[0]! },
    logLevel: 0,
    timeoutMs: 60_000,
    // A responder for N sites from one address: no per-IP half-open limit, no cookies, no routes.
    extraCharonConf: '  block_threshold = 1000000\n  cookie_threshold = 1000000\n  ikesa_table_size = 4096\n  ikesa_table_segments = 16\n',
  });
  writeFileSync(join(legacy.dir, 'swanctl.conf'), `connections {\n${conns}}\nsecrets {\n${secrets}}\n`, { mode: 0o600 });
  await legacy.swanctl(['--load-all', '--file', join(legacy.dir, 'swanctl.conf')], 600_000);
  log(`peer loaded ${shape === 'shared' ? `one connection and ${n + 1} secrets` : `${n + 1} connections`}`);
  return { h, psks, charonPid: charonOf(legacy.process.pid) };
}

async function measure(lab: Lab, n: number, log: (s: string) => void, logLevel: string, shape: PeerShape, withWg = false): Promise<Figures> {
  const { h, psks, charonPid: peerCharon } = await ipsecPeer(lab, n, log, shape);
  const peerTicks0 = peerCharon ? cpuTicks(peerCharon) : 0;
  // `both`: the same daemon also holds N WireGuard peers (what `wireguard` measures alone).
  const server = wgKeyPair();
  const wgPeers = withWg ? Array.from({ length: n }, () => wgKeyPair()) : [];
  const doc = (count: number): object => ({
    vrouter_id: 'ours',
    tenant_id: 't1',
    tunnels: psks.slice(0, count).map((psk, i) => tunnel(i, psk, h.addrB)),
    ...(withWg
      ? { wireguard: { listen_port: WG_PORT, private_key: server.privateKey }, wireguard_peers: wgPeers.map((k, i) => ({ name: `p${i}`, public_key: k.publicKey, allowed_ips: [wgAllowed(i)] })) }
      : {}),
  });
  const load0 = loadavg()[0]!;
  const t0 = Date.now();
  const ours = await vrouterRun(lab, h.a, { listenAddress: h.addrA, logLevel, document: doc(n), timeoutMs: 600_000 });
  log(`daemon ready line after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // `both`: the WireGuard peers' handshakes from the start, alongside the IPsec bring-up (from one
  // address: the responder's per-source rate limit under load paces them, as `wireguard` shows).
  const wgHandshakes = withWg ? handshakes(lab, h.b, `${h.addrA}:${WG_PORT}`, server.publicKey, wgPeers.map((k) => k.privateKey), Math.max(60, n * 0.1)) : undefined;
  let up = 0;
  let readyS: number | null = null;
  let ready99S: number | null = null;
  let states: Record<string, string> = {};
  const deadline = t0 + Math.max(120_000, n * 300);
  while (Date.now() < deadline) {
    ({ up, states } = await upCount(ours));
    if (ready99S === null && up >= Math.ceil(n * 0.99)) ready99S = (Date.now() - t0) / 1000;
    if (up === n) {
      readyS = (Date.now() - t0) / 1000;
      break;
    }
    await sleep(1000);
  }
  // Bring-up CPU, s: the peer's charon (the benchmark's responder) apart from the vrouter's node
  // and charon, so that the time to all up can be told apart from what the responder costs.
  const bringUpCpu = {
    peer_charon: peerCharon ? (cpuTicks(peerCharon) - peerTicks0) / CLK_TCK : null,
    node: cpuTicks(ours.process.pid) / CLK_TCK,
    charon: ((c) => (c ? cpuTicks(c) / CLK_TCK : null))(childCharon(ours.process.pid)),
  };
  log(`bring-up CPU: node ${bringUpCpu.node.toFixed(1)} s, its charon ${bringUpCpu.charon?.toFixed(1) ?? '-'} s, peer's charon ${bringUpCpu.peer_charon?.toFixed(1) ?? '-'} s`);
  const notUp = Object.entries(states).filter(([, st]) => st !== 'up');
  // The view checked against charon itself: IKE_SAs with an installed CHILD_SA, by connection.
  const vici = new ViciClient({ socketPath: ours.charonVici, requestTimeoutMs: 60_000 });
  const charonUp = new Set((await vici.listSas()).filter((sa) => sa.state === 'ESTABLISHED' && sa.childSas.some((c) => c.state === 'INSTALLED')).map((sa) => sa.name));
  await vici.close();
  if (notUp.length > 0) {
    // What the daemon (and, at log level debug, its charon) said last, for the reason.
    const tail = join(tmpdir(), `cvlan-sizing-${n}-${Date.now()}.log`);
    writeFileSync(tail, ours.process.lastOutput(5000));
    log(`daemon output tail: ${tail}`);
  }
  log(`${up}/${n} up${readyS !== null ? ` after ${readyS.toFixed(1)} s` : ' at the deadline'} (charon: ${charonUp.size}); not up: ${JSON.stringify(notUp.slice(0, 5))}`);
  let wgAnswered: number | null = null;
  let wgReadyS: number | null = null;
  if (wgHandshakes) {
    const hs = await wgHandshakes;
    wgAnswered = hs.answered;
    wgReadyS = hs.at === null ? null : +((hs.at - t0) / 1000).toFixed(2);
    log(`wireguard: ${hs.answered}/${n} handshakes answered${wgReadyS !== null ? `, the last at ${wgReadyS} s` : ''}`);
  }

  const node = ours.process.pid;
  const charon = childCharon(node);
  const rss = { node: rssMib(node), charon: charon ? rssMib(charon) : 0, total: 0 };
  rss.total = rss.node + rss.charon;

  // Idle: established, nothing configured changes.
  await sleep(5000);
  const c0 = { node: cpuTicks(node), charon: charon ? cpuTicks(charon) : 0 };
  const w0 = Date.now();
  await sleep(idleWindowS * 1000);
  const secs = (Date.now() - w0) / 1000;
  const idle = {
    node: ((cpuTicks(node) - c0.node) / CLK_TCK / secs) * 100,
    charon: charon ? ((cpuTicks(charon) - c0.charon) / CLK_TCK / secs) * 100 : 0,
  };
  const settled = { node: rssMib(node), charon: charon ? rssMib(charon) : 0, total: 0 };
  settled.total = settled.node + settled.charon;
  log(`idle CPU node ${idle.node.toFixed(1)} %, charon ${idle.charon.toFixed(1)} %; RSS ${rss.total.toFixed(0)} MiB (${rss.node.toFixed(0)} + ${rss.charon.toFixed(0)}), after the idle window ${settled.total.toFixed(0)} MiB (${settled.node.toFixed(0)} + ${settled.charon.toFixed(0)})`);

  // /metrics, median of 5.
  const scrapes: number[] = [];
  let metricsBytes = 0;
  for (let i = 0; i < 5; i++) {
    const s = process.hrtime.bigint();
    const r = await adminGet({ kind: 'unix', socketPath: ours.admin }, '/metrics', 30_000);
    scrapes.push(Number(process.hrtime.bigint() - s) / 1e6);
    metricsBytes = r.body.length;
  }
  scrapes.sort((a, b) => a - b);

  // One tunnel more, by SIGHUP.
  writeFileSync(ours.config, JSON.stringify(doc(n + 1), null, 2));
  const r0 = Date.now();
  const applied = ours.process.waitReady({ line: (l) => /"event":"config_applied"/.test(l) && Date.parse(/"time":"([^"]+)"/.exec(l)?.[1] ?? '') >= r0, timeoutMs: 300_000 });
  ours.process.signal('SIGHUP');
  let reloadApplied: number | null = null;
  await applied.then(
    () => (reloadApplied = (Date.now() - r0) / 1000),
    () => undefined,
  );
  let reloadUp: number | null = null;
  while (Date.now() - r0 < 120_000) {
    if ((await upCount(ours)).states[`t${n}`] === 'up') {
      reloadUp = (Date.now() - r0) / 1000;
      break;
    }
    await sleep(200);
  }
  log(`reload: applied ${reloadApplied ?? '-'} s, up ${reloadUp ?? '-'} s; scrape ${scrapes[2]!.toFixed(0)} ms`);

  const s0 = Date.now();
  await ours.process.stop(600_000);
  const stopS = (Date.now() - s0) / 1000;
  log(`stop ${stopS.toFixed(1)} s`);
  return {
    tunnels: n,
    wireguard_peers: wgPeers.length,
    wireguard_answered: wgAnswered,
    wireguard_ready_s: wgReadyS,
    peer_shape: shape,
    bring_up_cpu_s: bringUpCpu,
    ready_s: readyS,
    ready_99_s: ready99S,
    up,
    charon_up: charonUp.size,
    not_up: notUp.slice(0, 20),
    rss_mib: { node: +rss.node.toFixed(1), charon: +rss.charon.toFixed(1), total: +rss.total.toFixed(1) },
    rss_settled_mib: { node: +settled.node.toFixed(1), charon: +settled.charon.toFixed(1), total: +settled.total.toFixed(1) },
    idle_cpu_pct: { node: +idle.node.toFixed(1), charon: +idle.charon.toFixed(1) },
    reload_applied_s: reloadApplied,
    reload_up_s: reloadUp,
    scrape_ms: +scrapes[2]!.toFixed(1),
    metrics_bytes: metricsBytes,
    stop_s: stopS,
    loadavg_1m: { before: load0, after: loadavg()[0]! },
  };
}

/** CPU of `pids` over the idle window, % of one core each, after 5 s of settling. */
async function idleCpu(pids: number[]): Promise<number[]> {
  await sleep(5000);
  const c0 = pids.map(cpuTicks);
  const w0 = Date.now();
  await sleep(idleWindowS * 1000);
  const secs = (Date.now() - w0) / 1000;
  return pids.map((p, i) => +(((cpuTicks(p) - c0[i]!) / CLK_TCK / secs) * 100).toFixed(1));
}

/** Seconds of the idle-CPU window (`--idle-s`). */
let idleWindowS = 30;
/** Our tunnels' `dpd_delay` (`--dpd-s`; the configuration's default, 30 s, when not given). */
let dpdDelayS: number | undefined;
/** `--reference-tables`: the reference charon gets our IKE_SA table settings (`charonSettings`). */
let referenceTables = false;

const WG_PORT = 51820;
const wgAllowed = (i: number): string => `10.${64 + (i >> 8)}.${i & 255}.2/32`;

/** Every peer's handshake from namespace B until answered (`wg-handshakes.ts`). */
async function handshakes(lab: Lab, ns: string, target: string, responder: string, privs: string[], timeoutS: number): Promise<{ answered: number; at: number | null; cookies: number }> {
  const spec = lab.writeFile(`wg-hs-${privs.length}-${Date.now()}.json`, JSON.stringify({ target, responder, peers: privs, timeout_s: timeoutS }));
  const r = await run(tools.node, [fileURLToPath(new URL('./wg-handshakes.js', import.meta.url)), '--spec', spec], { ns, timeoutMs: (timeoutS + 120) * 1000 });
  const o = JSON.parse(r.stdout.trim().split('\n').pop()!) as { answered: number; all_s: number | null; started_at_ms: number; cookie_replies: number };
  // When the last answer arrived (not when the tool, a node process of its own, had started up).
  return { answered: o.answered, at: o.all_s === null ? null : o.started_at_ms + o.all_s * 1000, cookies: o.cookie_replies };
}

interface WgFigures {
  peers: number;
  ready_line_s: number;
  ready_s: number | null;
  answered: number;
  rss_mib: number;
  idle_cpu_pct: number;
  reload_applied_s: number | null;
  reload_up_s: number | null;
  scrape_ms: number | null;
  stop_s: number;
  loadavg_1m: { before: number; after: number };
}

async function measureWg(lab: Lab, n: number, log: (s: string) => void, logLevel: string): Promise<WgFigures> {
  const h = await twoHosts(lab);
  const server = wgKeyPair();
  const peers = Array.from({ length: n + 1 }, () => wgKeyPair());
  const doc = (count: number): object => ({
    vrouter_id: 'ours',
    tenant_id: 't1',
    wireguard: { listen_port: WG_PORT, private_key: server.privateKey },
    wireguard_peers: peers.slice(0, count).map((k, i) => ({ name: `p${i}`, public_key: k.publicKey, allowed_ips: [wgAllowed(i)] })),
  });
  const load0 = loadavg()[0]!;
  const t0 = Date.now();
  const ours = await vrouterRun(lab, h.a, { logLevel, document: doc(n), timeoutMs: 600_000 });
  const readyLine = (Date.now() - t0) / 1000;
  const hs = await handshakes(lab, h.b, `${h.addrA}:${WG_PORT}`, server.publicKey, peers.slice(0, n).map((k) => k.privateKey), Math.max(60, n * 0.1));
  const readyS = hs.at === null ? null : (hs.at - t0) / 1000;
  log(`wireguard: ready line ${readyLine.toFixed(1)} s, ${hs.answered}/${n} handshakes answered (${hs.cookies} cookie replies)${readyS !== null ? `, all by ${readyS.toFixed(1)} s` : ''}`);
  const node = ours.process.pid;
  const rss = rssMib(node);
  const [idle] = await idleCpu([node]);
  const scrapes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = process.hrtime.bigint();
    await adminGet({ kind: 'unix', socketPath: ours.admin }, '/metrics', 30_000);
    scrapes.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  scrapes.sort((a, b) => a - b);
  writeFileSync(ours.config, JSON.stringify(doc(n + 1), null, 2));
  const r0 = Date.now();
  const applied = ours.process.waitReady({ line: (l) => /"event":"config_applied"/.test(l) && Date.parse(/"time":"([^"]+)"/.exec(l)?.[1] ?? '') >= r0, timeoutMs: 120_000 });
  ours.process.signal('SIGHUP');
  let reloadApplied: number | null = null;
  await applied.then(
    () => (reloadApplied = (Date.now() - r0) / 1000),
    () => undefined,
  );
  const one = await handshakes(lab, h.b, `${h.addrA}:${WG_PORT}`, server.publicKey, [peers[n]!.privateKey], 30);
  const reloadUp = one.at === null ? null : (one.at - r0) / 1000;
  log(`wireguard: RSS ${rss.toFixed(0)} MiB, idle CPU ${idle} %, scrape ${scrapes[2]!.toFixed(0)} ms, reload applied ${reloadApplied ?? '-'} s, answered ${reloadUp ?? '-'} s`);
  const s0 = Date.now();
  await ours.process.stop(600_000);
  const stopS = (Date.now() - s0) / 1000;
  return {
    peers: n,
    ready_line_s: readyLine,
    ready_s: readyS === null ? null : +readyS.toFixed(2),
    answered: hs.answered,
    rss_mib: +rss.toFixed(1),
    idle_cpu_pct: idle!,
    reload_applied_s: reloadApplied,
    reload_up_s: reloadUp,
    scrape_ms: +scrapes[2]!.toFixed(1),
    stop_s: stopS,
    loadavg_1m: { before: load0, after: loadavg()[0]! },
  };
}

interface RefFigures {
  system: 'strongswan' | 'wireguard-go';
  n: number;
  ready_s: number | null;
  up: number;
  rss_mib: number;
  idle_cpu_pct: number;
  loadavg_1m: { before: number; after: number };
}

/** wireguard-go with the same N peers (one `wg addconf`) and the same handshakes. */
async function measureWireguardGo(lab: Lab, n: number, log: (s: string) => void): Promise<RefFigures> {
  const h = await twoHosts(lab);
  const server = wgKeyPair();
  const peers = Array.from({ length: n }, () => wgKeyPair());
  const load0 = loadavg()[0]!;
  const t0 = Date.now();
  const wg = await wireguardGo(lab, h.a, { keys: server, listenPort: WG_PORT, addresses: ['10.63.0.1/24'] });
  const conf = lab.writeFile(`wg-peers-${n}.conf`, peers.map((k, i) => `[Peer]\nPublicKey = ${k.publicKey}\nAllowedIPs = ${wgAllowed(i)}\n`).join('\n'));
  await run(tools.wg, ['addconf', wg.name, conf], { ns: h.a, timeoutMs: 300_000 });
  const hs = await handshakes(lab, h.b, `${h.addrA}:${WG_PORT}`, server.publicKey, peers.map((k) => k.privateKey), Math.max(60, n * 0.1));
  const readyS = hs.at === null ? null : (hs.at - t0) / 1000;
  const rss = rssMib(wg.process.pid);
  const [idle] = await idleCpu([wg.process.pid]);
  log(`wireguard-go: ${hs.answered}/${n} answered (${hs.cookies} cookie replies)${readyS !== null ? ` by ${readyS.toFixed(1)} s` : ''}, RSS ${rss.toFixed(0)} MiB, idle CPU ${idle} %`);
  await wg.process.stop(30_000);
  return { system: 'wireguard-go', n, ready_s: readyS === null ? null : +readyS.toFixed(2), up: hs.answered, rss_mib: +rss.toFixed(1), idle_cpu_pct: idle!, loadavg_1m: { before: load0, after: loadavg()[0]! } };
}

/**
 * Plain strongSwan as the initiating side: charon with kernel-libipsec in namespace A, the same N
 * connections and PSKs, loaded by `swanctl --load-all` with `start_action = start` and charon's
 * stock settings, against the same peer.
 */
async function measureStrongswan(lab: Lab, n: number, log: (s: string) => void, shape: PeerShape): Promise<RefFigures> {
  const tables = charonSettings();
  const { h, psks } = await ipsecPeer(lab, n, log, shape);
  const ours = await strongswanPeer(lab, h.a, {
    localAddr: h.addrA,
    remoteAddr: h.addrB,
    localTs: [OURS_NET],
    remoteTs: [remoteNet(n)],
    auth: { method: 'psk', psk: psks[n]! },
    logLevel: 0,
    ...(referenceTables ? { extraCharonConf: `  ikesa_table_size = ${tables.ikesa_table_size}\n  ikesa_table_segments = ${tables.ikesa_table_segments}\n` } : {}),
    timeoutMs: 60_000,
  });
  // kernel-libipsec routes the remote side from an address inside the local one.
  await lab.ip(h.a, ['address', 'add', OURS_NET.replace('.0/24', '.1/32'), 'dev', 'lo']);
  // The same liveness checks as our tunnels (swanctl's default is none): idle CPU is DPD's.
  const dpdS = dpdDelayS ?? 30;
  const dpd = dpdS > 0 ? `    dpd_delay = ${dpdS}s\n` : '';
  const conns = psks
    .slice(0, n)
    .map(
      (_, i) => `  s${i} {\n    version = 2\n    local_addrs = ${h.addrA}\n    remote_addrs = ${h.addrB}\n    proposals = aes256gcm16-prfsha256-x25519\n    encap = yes\n${dpd}    local {\n      auth = psk\n      id = ${OURS_ID}\n    }\n    remote {\n      auth = psk\n      id = ${peerId(i)}\n    }\n    children {\n      s${i} {\n        local_ts = ${OURS_NET}\n        remote_ts = ${remoteNet(i)}\n        esp_proposals = aes256gcm16\n        start_action = start\n      }\n    }\n  }\n`,
    )
    .join('');
  const secrets = psks.slice(0, n).map((psk, i) => `  ike-s${i} {\n    id-1 = ${OURS_ID}\n    id-2 = ${peerId(i)}\n    secret = 0x${Buffer.from(psk).toString('hex')}\n  }\n`).join('');
  writeFileSync(join(ours.dir, 'swanctl.conf'), `connections {\n${conns}}\nsecrets {\n${secrets}}\n`, { mode: 0o600 });
  const load0 = loadavg()[0]!;
  const t0 = Date.now();
  await ours.swanctl(['--load-all', '--file', join(ours.dir, 'swanctl.conf')], 600_000);
  let up = 0;
  let readyS: number | null = null;
  const deadline = t0 + Math.max(120_000, n * 150);
  while (Date.now() < deadline) {
    up = (await ours.listSas()).child.filter((c) => c.state === 'INSTALLED' && /^s\d+$/.test(c.name)).length;
    if (up >= n) {
      readyS = (Date.now() - t0) / 1000;
      break;
    }
    await sleep(2000);
  }
  const pid = ours.process.pid;
  const charon = readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'charon' ? pid : (childCharon(pid) ?? pid);
  const rss = rssMib(charon);
  const [idle] = await idleCpu([charon]);
  log(`strongswan: ${up}/${n} up${readyS !== null ? ` after ${readyS.toFixed(1)} s` : ' at the deadline'}, RSS ${rss.toFixed(0)} MiB, idle CPU ${idle} %`);
  return { system: 'strongswan', n, ready_s: readyS, up, rss_mib: +rss.toFixed(1), idle_cpu_pct: idle!, loadavg_1m: { before: load0, after: loadavg()[0]! } };
}

async function main(): Promise<void> {
  const values = benchArgs(
    'sizing',
    `usage: node dist/bench/sizing.js [options]   (as root; writes bench/results/sizing-<time>.json)

  --tunnels N[,N…]     tunnel/peer counts (default 100,500)
  --systems LIST       of ipsec, wireguard, both, strongswan, wireguard-go (default all but both)
  --peer SHAPE         the responder: per-tunnel (one connection per site, default) or shared
  --idle-s S           idle CPU window after all are up, seconds (default 30)
  --dpd-s S            our tunnels' and the reference's dpd_delay, seconds, 0 = off (default 30)
  --reference-tables   give the strongSwan reference our IKE_SA table settings
  --log-level LEVEL    the daemon's log level (default info)
  --label TEXT         stored in the results file
  --no-write           print the results only
  -h, --help           this text`,
    {
        tunnels: { type: 'string', default: '100,500' },
        systems: { type: 'string', default: 'ipsec,wireguard,strongswan,wireguard-go' },
        'no-write': { type: 'boolean', default: false },
        label: { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        peer: { type: 'string', default: 'per-tunnel' },
        'idle-s': { type: 'string', default: '30' },
        'dpd-s': { type: 'string' },
        'reference-tables': { type: 'boolean', default: false },
    },
  );
  idleWindowS = Number(values['idle-s']);
  if (!Number.isFinite(idleWindowS) || idleWindowS < 1) usageExit('sizing', `--idle-s: "${values['idle-s']}" is not a number of seconds ≥ 1`);
  if (values['dpd-s'] !== undefined) {
    dpdDelayS = Number(values['dpd-s']);
    if (!Number.isInteger(dpdDelayS) || dpdDelayS < 0) usageExit('sizing', `--dpd-s: "${values['dpd-s']}" is not a whole number of seconds ≥ 0`);
  }
  referenceTables = values['reference-tables'];
  if (values.peer !== 'per-tunnel' && values.peer !== 'shared') usageExit('sizing', `--peer: "${values.peer}" is neither per-tunnel nor shared`);
  const shape: PeerShape = values.peer;
  const systems = new Set(values.systems.split(','));
  for (const s of systems) if (!['ipsec', 'wireguard', 'both', 'strongswan', 'wireguard-go'].includes(s)) usageExit('sizing', `--systems: unknown system "${s}"`);
  const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl');
  if (skip) throw new Error(`cannot run: ${skip}`);
  const startedAt = new Date();
  const results: Figures[] = [];
  const wg: WgFigures[] = [];
  const reference: RefFigures[] = [];
  const both: Figures[] = [];
  const out = { kind: 'sizing', label: values.label ?? null, reference_tables: referenceTables, started_at: startedAt.toISOString(), cpus: (await import('node:os')).cpus().length, idle_window_s: idleWindowS, dpd_delay_s: dpdDelayS ?? 30, ipsec: results, wireguard: wg, both, reference };
  const file = join(REPO_ROOT, 'bench', 'results', `sizing-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  // Written after every system: a run cut short keeps what it measured.
  const save = (): void => {
    if (values['no-write']) return;
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  };
  for (const n of values.tunnels.split(',').map(Number)) {
    const log = (s: string): void => void process.stdout.write(`[N=${n}] ${s}\n`);
    if (systems.has('ipsec')) results.push(await withLab((lab) => measure(lab, n, log, values['log-level'], shape), { label: 'sizing' }));
    save();
    if (systems.has('both')) both.push(await withLab((lab) => measure(lab, n, log, values['log-level'], shape, true), { label: 'sizingboth' }));
    save();
    if (systems.has('strongswan')) reference.push(await withLab((lab) => measureStrongswan(lab, n, log, shape), { label: 'sizingss' }));
    save();
    if (systems.has('wireguard')) wg.push(await withLab((lab) => measureWg(lab, n, log, values['log-level']), { label: 'sizingwg' }));
    save();
    if (systems.has('wireguard-go')) reference.push(await withLab((lab) => measureWireguardGo(lab, n, log), { label: 'sizingwgo' }));
    save();
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  if (!values['no-write']) process.stdout.write(`results: ${file}\n`);
}

await main();
// The harness's stop() leaves its SIGKILL grace timer (long here: charon may take long) pending.
process.exit(0);
