/**
 * The one module that loads the native addon (`cvlan.<platform>.node`). Everything else
 * imports the typed wrapper in `./index.ts`; nothing else touches the binding.
 *
 * Resolution: `CVLAN_NATIVE_PATH` if set, else `<repo>/build/cvlan.<platform>-<arch>-<libc>.node`
 * as written by `npm run build:native`.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CvlanError } from '../errors.js';

/** Shapes as the addon exports them (see crates/cvlan-node/src/lib.rs). */
export interface BindingNativeInfo {
  version: string;
  napiVersion: number;
  defaultWorkers: number;
  transports: string[];
}

export interface BindingPlainPeer {
  endpoint: string;
  allowedIps: string[];
}

export interface BindingPlainDeviceOptions {
  tunName: string;
  mtu?: number;
  listenAddress?: string;
  listenPort: number;
  workers?: number;
  offload?: boolean;
  peers: BindingPlainPeer[];
}

/** A count under one code of the data plane's drop table (`Binding.dropCodes()`). */
export interface BindingDropCount {
  reason: string;
  count: bigint;
}

export interface BindingWorkerStats {
  index: number;
  active: boolean;
  tunRxPackets: bigint;
  tunRxBytes: bigint;
  tunTxPackets: bigint;
  tunTxBytes: bigint;
  udpRxPackets: bigint;
  udpRxBytes: bigint;
  udpTxPackets: bigint;
  udpTxBytes: bigint;
  batches: bigint;
  restarts: bigint;
  busyNs: bigint;
  /** Packets translated to the other device of a pair on this worker (IPsec ⇄ WireGuard). */
  translated: bigint;
  /** Packets this worker sealed or opened: its own batches' and, of those, `helpedPackets`,
   *  shares of other workers' batches (one flow's crypto spread over the workers). */
  cryptoPackets: bigint;
  helpedPackets: bigint;
  /** Syscalls (TUN read/write, recvmmsg, sendmmsg): packets per call shows the batching. */
  tunReads: bigint;
  tunWrites: bigint;
  udpRecvs: bigint;
  udpSends: bigint;
  drops: BindingDropCount[];
}

export interface BindingEvent {
  type:
    | 'worker-started'
    | 'worker-stopped'
    | 'worker-restarted'
    | 'worker-failed'
    | 'tun-lost'
    | 'sas-removed'
    | 'handshake-complete'
    | 'handshake-failed'
    | 'endpoint-changed'
    | 'keys-zeroed';
  /** Worker events. */
  worker?: number;
  reason?: string;
  restarts?: number;
  /** WireGuard events: the peer's public key (base64) and, when it moved, its endpoint. */
  peer?: string;
  endpoint?: string;
  /** `tun-lost`: the TUN device a worker can no longer read (deleted, usually). */
  device?: string;
  /** `sas-removed`: the tunnel (if_id) whose SAs the data plane removed, and their SPIs (hex). */
  ifId?: number;
  spis?: string[];
}

export interface BindingPlainDevice {
  readonly listenPort: number;
  readonly tunName: string;
  readonly closed: boolean;
  readonly workers: number;
  setPeers(peers: BindingPlainPeer[]): void;
  setWorkers(workers: number): void;
  stats(): BindingWorkerStats[];
  injectPanic(worker: number): void;
  close(): void;
}

export interface BindingIpsecDeviceOptions {
  tunName: string;
  mtu?: number;
  listenAddress: string;
  natPort?: number;
  ikePort?: number;
  workers?: number;
  charonSocket: string;
  rawEsp?: boolean;
}

export interface BindingSaInfo {
  spi: number;
  inbound: boolean;
  ifId: number;
  src: string;
  dst: string;
  bytes: bigint;
  packets: bigint;
  idleSecs?: number;
  algorithm: string;
  esn: boolean;
  encap: boolean;
}

export interface BindingIpsecCounters {
  ikeIn: bigint;
  ikeOut: bigint;
  natKeepalives: bigint;
  expiresSent: bigint;
  drops: BindingDropCount[];
}

export interface BindingIpsecDevice {
  readonly tunName: string;
  readonly natPort: number;
  readonly ikePort: number;
  readonly closed: boolean;
  readonly rawEsp: boolean;
  readonly rawEspError: string | null;
  readonly handoffId: number;
  setTenants(tunnels: { ifId: number; tenant: number }[]): void;
  sas(): BindingSaInfo[];
  counters(): BindingIpsecCounters;
  stats(): BindingWorkerStats[];
  close(): void;
}

export interface BindingWireGuardDeviceOptions {
  tunName: string;
  mtu?: number;
  listenAddress?: string;
  listenPort: number;
  workers?: number;
  privateKey?: Buffer;
}

export interface BindingWgPeerState {
  publicKey: Buffer;
  presharedKey?: Buffer;
  endpoint?: string;
  allowedIps: string[];
  persistentKeepalive: number;
  lastHandshakeSec?: number;
  lastHandshakeNsec?: number;
  rxBytes: bigint;
  txBytes: bigint;
}

/** Every peer's traffic as columns (crates/cvlan-node/src/wireguard.rs `traffic`). */
export interface BindingWgPeerTraffic {
  /** 32 bytes per peer, in the order of the arrays. */
  publicKeys: Buffer;
  rxBytes: Float64Array;
  txBytes: Float64Array;
  /** ms since the Unix epoch; NaN before the first handshake. */
  lastHandshakeMs: Float64Array;
}

export interface BindingWgDeviceState {
  privateKey?: Buffer;
  publicKey?: Buffer;
  listenPort: number;
  peers: BindingWgPeerState[];
}

export interface BindingWgPeerUpdate {
  publicKey: Buffer;
  remove?: boolean;
  updateOnly?: boolean;
  presharedKey?: Buffer;
  endpoint?: string;
  persistentKeepalive?: number;
  replaceAllowedIps?: boolean;
  allowedIps?: string[];
  removeAllowedIps?: string[];
}

export interface BindingWgDeviceUpdate {
  privateKey?: Buffer;
  listenPort?: number;
  replacePeers?: boolean;
  peers: BindingWgPeerUpdate[];
}

export interface BindingWgCounters {
  handshakesCompleted: bigint;
  handshakesFailed: bigint;
  handshakeMessages: bigint;
  drops: BindingDropCount[];
}

export interface BindingWireGuardDevice {
  readonly tunName: string;
  readonly listenPort: number;
  readonly closed: boolean;
  readonly handoffId: number;
  state(): BindingWgDeviceState;
  traffic(): BindingWgPeerTraffic;
  apply(update: BindingWgDeviceUpdate): void;
  counters(): BindingWgCounters;
  stats(): BindingWorkerStats[];
  close(): void;
}

export interface BindingTenantTunOptions {
  tunName: string;
  mtu?: number;
  workers?: number;
  subnets: string[];
}

export interface BindingTenantTunDevice {
  readonly tunName: string;
  readonly closed: boolean;
  readonly handoffId: number;
  stats(): BindingWorkerStats[];
  close(): void;
}

/** Options of the HA sync channel (crates/cvlan-node/src/ha.rs). */
export interface BindingHaSyncOptions {
  /** TCP "ip:port" this node listens on for the peer. */
  listen: string;
  /** TCP "ip:port" of the peer's channel. */
  peer: string;
  /** The 32-byte sync key; zero the Buffer after the constructor returns. */
  key: Buffer;
  /** 1..255, distinct on the two nodes. */
  nodeId: number;
  /** Milliseconds between counter updates and heartbeats; default 100. */
  syncIntervalMs?: number;
  /** Messages a session may send beyond what the standby acknowledged; default 1048576 (2^20). */
  leaseMessages?: number;
  /** Relay of charon's ha plugin datagrams through the channel. */
  relay?: { bind: string; deliverTo: string };
}

export type BindingHaEventKind = 'peer-up' | 'peer-down' | 'rejected' | 'takeover' | 'lease-exhausted' | 'snapshot-done';

export interface BindingHaEvent {
  kind: BindingHaEventKind;
  reason?: string;
  /**
   * takeover comes with every standby → active change (the first activation too);
   * peer-up: { nodeId, role, generation };
   * takeover: { wgSessionsContinued, wgSessionsStopped, espSasContinued, espSasStopped };
   * lease-exhausted: { receiverIndex } (WireGuard) or { spi } (an outbound ESP SA: charon is
   * asked to rekey it); snapshot-done: { wgSessions }.
   */
  detail?: Record<string, unknown>;
}

export type BindingHaRole = 'active' | 'standby';

export interface BindingHaStatus {
  role: BindingHaRole;
  peerConnected: boolean;
  peerRole?: BindingHaRole;
  peerGeneration?: number;
  /** Milliseconds since the last authenticated frame from the peer. */
  lastSyncAgeMs?: number;
  syncedWgSessions: number;
  syncedEspSas: number;
  framesSent: number;
  framesReceived: number;
  rejectedForged: number;
  rejectedReplayed: number;
  /** Authentic frames that could not be decoded (a message kind this node does not know). */
  rejectedMalformed: number;
  leaseExhausted: number;
}

/** The sync channel: WireGuard sessions, ESP SAs and outbound policies, counters, relay. */
export interface BindingHaSync {
  attachWireguard(device: BindingWireGuardDevice): void;
  /** Before the device closes: synced sessions no longer go to it. */
  detachWireguard(device: BindingWireGuardDevice): void;
  /** ESP SAs and outbound policies synced (active) or imported (standby); passive as standby. */
  attachIpsec(device: BindingIpsecDevice): void;
  /** Before the device closes: synced SAs no longer go to it. */
  detachIpsec(device: BindingIpsecDevice): void;
  setGeneration(generation: number): void;
  /** standby = passive (sends nothing); active = counters jump by the lease, then it sends. */
  setRole(role: BindingHaRole): void;
  status(): BindingHaStatus;
  close(): void;
}

/** Options of `Binding.traceStart` (crates/cvlan-node/src/trace.rs). */
export interface BindingTraceStartOptions {
  count?: number;
  tenant?: number;
  /** Base64 WireGuard public key. */
  peer?: string;
  spis?: number[];
  prefix?: string;
}

export interface BindingTraceStatus {
  on: boolean;
  count: number;
  remaining: number;
  lost: number;
}

/** One stage of a traced packet: its name, a one-line description and the fields it has. */
export interface BindingTraceStage {
  stage: string;
  detail: string;
  device?: string;
  worker?: number;
  len?: number;
  from?: string;
  src?: string;
  dst?: string;
  proto?: number;
  tenant?: number;
  spi?: number;
  seq?: number;
  receiver?: number;
  counter?: number;
  table?: string;
  peer?: number;
  to?: string;
  prefixLen?: number;
  reason?: string;
  verdict?: string;
}

export interface BindingTracePacket {
  id: string;
  atNs: number;
  stages: BindingTraceStage[];
}

export interface Binding {
  nativeInfo(): BindingNativeInfo;
  echoBuffer(buf: Buffer): Buffer;
  /** Every drop code the data plane counts (`crates/cvlan-dataplane/src/counters.rs`). */
  dropCodes(): string[];
  /** The packet trace, over every device's workers (one per process). */
  traceStart(opts: BindingTraceStartOptions): void;
  traceStop(): void;
  traceClear(): void;
  traceStatus(): BindingTraceStatus;
  traceRead(): BindingTracePacket[];
  PlainDevice: new (options: BindingPlainDeviceOptions, onEvent?: (ev: BindingEvent) => void) => BindingPlainDevice;
  IpsecDevice: new (options: BindingIpsecDeviceOptions, onEvent?: (ev: BindingEvent) => void) => BindingIpsecDevice;
  WireGuardDevice: new (options: BindingWireGuardDeviceOptions, onEvent?: (ev: BindingEvent) => void) => BindingWireGuardDevice;
  TenantTunDevice: new (options: BindingTenantTunOptions, onEvent?: (ev: BindingEvent) => void) => BindingTenantTunDevice;
  setHandoff(device: number, handoff: BindingHandoff | null): void;
  HaSync: new (options: BindingHaSyncOptions, onEvent: (ev: BindingHaEvent) => void) => BindingHaSync;
  /** The HA pair's VIPs: sockets may bind them before this node owns them (IP_FREEBIND). */
  setFloatingAddresses(addresses: string[]): void;
}

export interface BindingHandoffRule {
  fromTenant: number;
  source: string;
  destination: string;
}

export interface BindingHandoff {
  stamp: number;
  isolated: boolean;
  targets: { device: number; tenant: number; rules?: BindingHandoffRule[] }[];
}

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'cvlan-vrouter') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new CvlanError('CVLAN_ERR_ADDON_MISSING', 'cannot find the cvlan-vrouter package root');
    dir = up;
  }
}

function platformFile(): string {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  const libc = process.platform === 'linux' ? (report?.header?.glibcVersionRuntime ? '-gnu' : '-musl') : '';
  return `cvlan.${process.platform}-${process.arch}${libc}.node`;
}

/** Where the addon is expected; exported for error messages and diagnostics. */
export function addonPath(): string {
  return process.env.CVLAN_NATIVE_PATH ?? join(repoRoot(), 'build', platformFile());
}

let cached: Binding | undefined;

/** Loads the addon once. Throws CVLAN_ERR_ADDON_MISSING with the command that fixes it. */
export function loadBinding(): Binding {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new CvlanError(
      'CVLAN_ERR_ADDON_MISSING',
      `native addon not found at ${path}: build it with \`npm run build:native\` (or run \`bash scripts/setup.sh\`)`,
    );
  }
  try {
    cached = createRequire(import.meta.url)(path) as Binding;
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    const otherNode = /NODE_MODULE_VERSION|different Node\.js version|invalid ELF|wrong ELF class|undefined symbol: napi_/.test(msg);
    throw new CvlanError(
      'CVLAN_ERR_ADDON_MISSING',
      otherNode
        ? `native addon at ${path} was built for another Node.js or platform (running Node ${process.version} ` +
            `${process.platform}-${process.arch}): rebuild it with \`npm run build:native\``
        : `native addon at ${path} failed to load: ${msg}; rebuild it with \`npm run build:native\``,
      { cause },
    );
  }
  return cached;
}
