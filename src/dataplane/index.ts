/**
 * Typed wrapper of the data plane. Converts options, turns native errors into `CvlanError`
 * with the same stable code, and delivers worker events as a Node.js EventEmitter.
 */
import { EventEmitter } from 'node:events';
import { CvlanError, fromNative } from '../errors.js';
import {
  canonicalEndpoint,
  canonicalPrefix,
  type WgDeviceState,
  type WgDeviceUpdate,
  type WireGuardControl,
} from '../wireguard/control.js';
import {
  loadBinding,
  type Binding,
  type BindingEvent,
  type BindingIpsecCounters,
  type BindingIpsecDevice,
  type BindingPlainDevice,
  type BindingSaInfo,
  type BindingTenantTunDevice,
  type BindingWorkerStats,
  type BindingWgCounters,
  type BindingWgDeviceState,
  type BindingWgDeviceUpdate,
  type BindingWgPeerTraffic,
  type BindingWireGuardDevice,
  type BindingHaEvent,
  type BindingHaRole,
  type BindingHaStatus,
  type BindingHaSync,
  type BindingHaSyncOptions,
} from './binding.js';

export { addonPath } from './binding.js';
export * from './trace.js';

export interface NativeInfo {
  version: string;
  napiVersion: number;
  /** Worker threads used when a device does not say: the number of CPUs. */
  defaultWorkers: number;
  transports: string[];
}

export function nativeInfo(): NativeInfo {
  try {
    return loadBinding().nativeInfo();
  } catch (e) {
    throw fromNative(e);
  }
}

/** Round-trips a buffer through the binding (micro-benchmark of the call boundary). */
export function echoBuffer(buf: Buffer): Buffer {
  return loadBinding().echoBuffer(buf);
}

export interface PlainPeer {
  /** `ip:port` or `[ip6]:port` of the other instance. */
  endpoint: string;
  /** Prefixes routed to this peer; inner sources from it must fall inside them. */
  allowedIps: string[];
}

export interface PlainDeviceOptions {
  /** TUN interface to create (must not exist). */
  tunName: string;
  /** TUN MTU in bytes. Default 1420. */
  mtu?: number;
  /** Address to bind. Default: all addresses. */
  listenAddress?: string;
  /** UDP port; 0 picks a free one (read it back from `listenPort`). */
  listenPort: number;
  /** Worker threads. Default: number of CPUs. */
  workers?: number;
  /** TUN TSO/GRO and UDP GSO/GRO where the kernel allows. Default true. */
  offload?: boolean;
  peers: PlainPeer[];
}

export type DataplaneEvent = BindingEvent;
export type WorkerStats = BindingWorkerStats;

export interface DeviceEvents {
  event: [DataplaneEvent];
}

/** What every native device has: its TUN, whether it is closed, per-worker counters, close. */
interface NativeDevice {
  readonly tunName: string;
  readonly closed: boolean;
  stats(): BindingWorkerStats[];
  close(): void;
}

/**
 * The part every device wrapper shares: the native device, its TUN name, `closed`, `stats()` and
 * `close()`, and native errors turned into `CvlanError`. The native device is also closed by its
 * finalizer when the wrapper is collected (`crates/cvlan-node`).
 */
abstract class Device<N extends NativeDevice> extends EventEmitter<DeviceEvents> {
  protected readonly native: N;

  protected constructor(native: N) {
    super();
    this.native = native;
  }

  get tunName(): string {
    return this.native.tunName;
  }
  get closed(): boolean {
    return this.native.closed;
  }
  stats(): WorkerStats[] {
    return this.call(() => this.native.stats());
  }
  close(): void {
    this.native.close();
  }

  protected call<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw fromNative(e);
    }
  }
}

/** A device other devices' workers can hand packets to (`setHandoff`). */
abstract class HandoffDevice<N extends NativeDevice & { readonly handoffId: number }> extends Device<N> {
  /** This device's id for `setHandoff`. */
  get handoffId(): number {
    return this.native.handoffId;
  }
}

/**
 * A wrapper around a new native device. The thread-safe event callback is a GC root, so it
 * reaches the wrapper only through a weak reference: an unreferenced wrapper can be collected
 * (the finalizer closes the device). Events raised while the constructor ran are delivered once
 * listeners can be attached.
 */
function openDevice<N, D extends EventEmitter<DeviceEvents>>(make: (b: Binding, onEvent: (ev: DataplaneEvent) => void) => N, wrap: (native: N) => D): D {
  const holder: { ref?: WeakRef<D> } = {};
  const pending: DataplaneEvent[] = [];
  const onEvent = (ev: DataplaneEvent): void => {
    const self = holder.ref?.deref();
    if (self) self.emit('event', ev);
    else if (!holder.ref) pending.push(ev);
  };
  let dev: D;
  try {
    dev = wrap(make(loadBinding(), onEvent));
  } catch (e) {
    throw fromNative(e);
  }
  holder.ref = new WeakRef(dev);
  if (pending.length) {
    setImmediate(() => {
      const self = holder.ref?.deref();
      if (self) pending.splice(0).forEach((ev) => self.emit('event', ev));
    });
  }
  return dev;
}

/**
 * The plain, unencrypted IP-in-UDP transport: for tests and benchmarks only (the production
 * configuration loader refuses it). It is the "no crypto" baseline of every benchmark.
 */
export class PlainDevice extends Device<BindingPlainDevice> {
  static open(options: PlainDeviceOptions): PlainDevice {
    return openDevice((b, onEvent) => new b.PlainDevice(options, onEvent), (n) => new PlainDevice(n));
  }

  get listenPort(): number {
    return this.native.listenPort;
  }
  get workers(): number {
    return this.native.workers;
  }

  setPeers(peers: PlainPeer[]): void {
    this.call(() => this.native.setPeers(peers));
  }
  setWorkers(n: number): void {
    this.call(() => this.native.setWorkers(n));
  }
  /** Test hook: worker `index` panics at its next wake-up; it is restarted and counted. */
  injectPanic(index: number): void {
    this.call(() => this.native.injectPanic(index));
  }
}

/** A device the handoff stage hands packets to, for one tenant (`crates/cvlan-dataplane/src/handoff.rs`). */
export interface HandoffTarget {
  device: WireGuardDevice | IpsecDevice | TenantTunDevice;
  /** Tenant tag whose packets it takes (≥ 1); 0 = every packet (a single-tenant pair). */
  tenant: number;
  /** Packets of other tenants it also takes: from tenant `fromTenant`, `source` → `destination`. */
  rules?: { fromTenant: number; source: string; destination: string }[];
}

export interface Handoff {
  /** Tenant tag of everything the device decapsulates (a tenant's WireGuard device); 0 when it tags packets itself (IPsec, by tunnel) or there is one tenant. */
  stamp: number;
  /** Drop (and count) tagged packets no target takes instead of writing them to the TUN. */
  isolated: boolean;
  targets: HandoffTarget[];
}

/**
 * Sets (`null`: clears) `device`'s handoff: where its workers send inner packets other devices
 * route — ESP in → WireGuard out and back, per tenant, without a TUN or kernel hop. Validated in
 * full first; on error nothing changes.
 */
export function setHandoff(device: WireGuardDevice | IpsecDevice | TenantTunDevice, handoff: Handoff | null): void {
  try {
    loadBinding().setHandoff(
      device.handoffId,
      handoff === null
        ? null
        : {
            stamp: handoff.stamp,
            isolated: handoff.isolated,
            targets: handoff.targets.map((t) => ({ device: t.device.handoffId, tenant: t.tenant, ...(t.rules ? { rules: t.rules } : {}) })),
          },
    );
  } catch (e) {
    throw fromNative(e);
  }
}

export interface TenantTunDeviceOptions {
  /** TUN interface to create (must not exist). */
  tunName: string;
  /** TUN MTU in bytes. Default 1420. */
  mtu?: number;
  /** Worker threads. Default: number of CPUs. */
  workers?: number;
  /** The prefixes behind the TUN: routed into it, and the only sources accepted from it. */
  subnets: string[];
}

/**
 * A tenant's local network on a TUN of its own: no ports, no protocol. What its hosts send is
 * routed by the tenant's other devices on the workers (`setHandoff`), and what those
 * decapsulate for its subnets is written into it.
 */
export class TenantTunDevice extends HandoffDevice<BindingTenantTunDevice> {
  static open(options: TenantTunDeviceOptions): TenantTunDevice {
    return openDevice((b, onEvent) => new b.TenantTunDevice(options, onEvent), (n) => new TenantTunDevice(n));
  }
}

export interface IpsecDeviceOptions {
  /** TUN interface to create (must not exist). */
  tunName: string;
  /** TUN MTU in bytes. Default 1400. */
  mtu?: number;
  /** The public address for IKE and ESP (required). */
  listenAddress: string;
  /** ESP-in-UDP / NAT-T port. Default 4500. */
  natPort?: number;
  /** IKE port. Default 500. */
  ikePort?: number;
  /** Worker threads. Default: number of CPUs. */
  workers?: number;
  /** Unix socket for charon's `cvlan` plugin. */
  charonSocket: string;
  /** Also carry ESP without UDP (IP protocol 50) on a raw socket where the host allows it. */
  rawEsp?: boolean;
}

export type SaInfo = BindingSaInfo;
export type IpsecCounters = BindingIpsecCounters;

/**
 * An IPsec device: a TUN interface whose packets are ESP-protected with the SAs charon installs
 * through the `cvlan` plugin, and the UDP ports (IKE, NAT-T) the data plane owns.
 */
export class IpsecDevice extends HandoffDevice<BindingIpsecDevice> {
  static open(options: IpsecDeviceOptions): IpsecDevice {
    return openDevice((b, onEvent) => new b.IpsecDevice(options, onEvent), (n) => new IpsecDevice(n));
  }

  get natPort(): number {
    return this.native.natPort;
  }
  get ikePort(): number {
    return this.native.ikePort;
  }
  /** Which tenant (tag ≥ 1) each tunnel (CHILD_SA if_id) belongs to; empty: one tenant. */
  setTenants(tunnels: { ifId: number; tenant: number }[]): void {
    this.call(() => this.native.setTenants(tunnels));
  }
  /** A raw ESP socket is open: charon may negotiate ESP without UDP where there is no NAT. */
  get rawEsp(): boolean {
    return this.native.rawEsp;
  }
  /** Why a raw ESP socket was asked for and not opened (e.g. no CAP_NET_RAW), else null. */
  get rawEspError(): string | null {
    return this.native.rawEspError ?? null;
  }
  /** Installed SAs and their counters (no key material). */
  sas(): SaInfo[] {
    return this.native.sas();
  }
  /** IKE relay counters and IPsec drops by reason. */
  counters(): IpsecCounters {
    return this.native.counters();
  }
  /** Puts this device's SAs and outbound policies under `sync` (`HaSync.attachIpsec`). */
  attachTo(sync: BindingHaSync): void {
    this.call(() => sync.attachIpsec(this.native));
  }
  /** Takes this device out of `sync` (before it closes). */
  detachFrom(sync: BindingHaSync): void {
    this.call(() => sync.detachIpsec(this.native));
  }
}

export interface WireGuardDeviceOptions {
  /** TUN interface to create (must not exist). */
  tunName: string;
  /** TUN MTU in bytes. Default 1420. */
  mtu?: number;
  /** Address to bind. Default: all addresses. */
  listenAddress?: string;
  /**
   * UDP port; 0 picks a free one (read it back from `listenPort`). `apply({listenPort})` moves
   * the running device to another port (`CVLAN_ERR_ADDR_IN_USE` if taken).
   */
  listenPort: number;
  /** Worker threads. Default: number of CPUs. */
  workers?: number;
  /** Curve25519 private key, 32 bytes. May also be set later with `apply`. */
  privateKey?: Buffer;
}

export type { WgDeviceState, WgDeviceUpdate } from '../wireguard/control.js';
export type WgCounters = BindingWgCounters;
export type WgPeerTraffic = BindingWgPeerTraffic;

/**
 * A userspace WireGuard interface: TUN + one UDP port + peers changed at runtime without
 * disturbing the others. `state()`/`apply()` follow the cross-platform UAPI (`get=1`/`set=1`).
 */
export class WireGuardDevice extends HandoffDevice<BindingWireGuardDevice> implements WireGuardControl {
  static open(options: WireGuardDeviceOptions): WireGuardDevice {
    return openDevice((b, onEvent) => new b.WireGuardDevice(options, onEvent), (n) => new WireGuardDevice(n));
  }

  get listenPort(): number {
    return this.native.listenPort;
  }
  /** Puts this device's sessions under `sync` (`HaSync.attachWireguard`). */
  attachTo(sync: BindingHaSync): void {
    this.call(() => sync.attachWireguard(this.native));
  }
  /** Takes this device's sessions out of `sync` (before it closes). */
  detachFrom(sync: BindingHaSync): void {
    this.call(() => sync.detachWireguard(this.native));
  }
  /** The interface name (the UAPI socket is named after it). */
  get name(): string {
    return this.native.tunName;
  }
  /** Interface and peers, including key material: only for root-only management paths. */
  state(): WgDeviceState {
    const s: BindingWgDeviceState = this.call(() => this.native.state());
    return {
      privateKey: s.privateKey ? new Uint8Array(s.privateKey) : null,
      listenPort: s.listenPort,
      fwmark: 0,
      peers: s.peers.map((p) => ({
        publicKey: new Uint8Array(p.publicKey),
        presharedKey: p.presharedKey ? new Uint8Array(p.presharedKey) : null,
        endpoint: p.endpoint === undefined ? null : (canonicalEndpoint(p.endpoint) ?? p.endpoint),
        allowedIps: p.allowedIps.map((a) => canonicalPrefix(a) ?? a),
        persistentKeepalive: p.persistentKeepalive,
        lastHandshake: p.lastHandshakeSec === undefined ? null : { sec: p.lastHandshakeSec, nsec: p.lastHandshakeNsec ?? 0 },
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        protocolVersion: 1 as const,
      })),
    };
  }
  /**
   * Every peer's public key (32 bytes each), byte counters and last handshake as columns, without
   * key material or allowed IPs: one call for a metrics scrape, however many peers.
   */
  traffic(): WgPeerTraffic {
    return this.call(() => this.native.traffic());
  }
  /** Applies an update atomically (validated first; nothing changes on error). */
  apply(update: WgDeviceUpdate): void {
    if (update.fwmark !== undefined && update.fwmark !== 0) {
      // The sockets are owned by the workers and carry no SO_MARK; refuse rather than ignore.
      throw new CvlanError('CVLAN_ERR_INVALID_ARG', 'fwmark: not supported by this data plane (only 0)', {
        details: { path: 'fwmark' },
      });
    }
    const buf = (k: Uint8Array | null | undefined): Buffer | undefined =>
      k === undefined ? undefined : k === null ? Buffer.alloc(32) : Buffer.from(k);
    const native: BindingWgDeviceUpdate = {
      ...(update.privateKey !== undefined ? { privateKey: buf(update.privateKey)! } : {}),
      ...(update.listenPort !== undefined ? { listenPort: update.listenPort } : {}),
      ...(update.replacePeers ? { replacePeers: true } : {}),
      peers: update.peers.map((p) => ({
        publicKey: Buffer.from(p.publicKey),
        ...(p.remove ? { remove: true } : {}),
        ...(p.updateOnly ? { updateOnly: true } : {}),
        ...(p.presharedKey !== undefined ? { presharedKey: buf(p.presharedKey)! } : {}),
        ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}),
        ...(p.persistentKeepalive !== undefined ? { persistentKeepalive: p.persistentKeepalive } : {}),
        ...(p.replaceAllowedIps ? { replaceAllowedIps: true } : {}),
        ...(p.allowedIps !== undefined ? { allowedIps: p.allowedIps } : {}),
        ...(p.removeAllowedIps !== undefined ? { removeAllowedIps: p.removeAllowedIps } : {}),
      })),
    };
    this.call(() => this.native.apply(native));
  }
  counters(): WgCounters {
    return this.native.counters();
  }
}

/** Sums per-worker counters (drops merged by reason). */
export function totals(stats: WorkerStats[]): Omit<WorkerStats, 'index' | 'active'> {
  const sum = {
    tunRxPackets: 0n, tunRxBytes: 0n, tunTxPackets: 0n, tunTxBytes: 0n,
    udpRxPackets: 0n, udpRxBytes: 0n, udpTxPackets: 0n, udpTxBytes: 0n,
    batches: 0n, restarts: 0n, busyNs: 0n, translated: 0n, cryptoPackets: 0n, helpedPackets: 0n,
    tunReads: 0n, tunWrites: 0n, udpRecvs: 0n, udpSends: 0n,
    drops: [] as { reason: string; count: bigint }[],
  };
  const drops = new Map<string, bigint>();
  for (const s of stats) {
    sum.tunRxPackets += s.tunRxPackets; sum.tunRxBytes += s.tunRxBytes;
    sum.tunTxPackets += s.tunTxPackets; sum.tunTxBytes += s.tunTxBytes;
    sum.udpRxPackets += s.udpRxPackets; sum.udpRxBytes += s.udpRxBytes;
    sum.udpTxPackets += s.udpTxPackets; sum.udpTxBytes += s.udpTxBytes;
    sum.batches += s.batches; sum.restarts += s.restarts; sum.busyNs += s.busyNs; sum.translated += s.translated;
    sum.cryptoPackets += s.cryptoPackets; sum.helpedPackets += s.helpedPackets;
    sum.tunReads += s.tunReads; sum.tunWrites += s.tunWrites;
    sum.udpRecvs += s.udpRecvs; sum.udpSends += s.udpSends;
    for (const d of s.drops) drops.set(d.reason, (drops.get(d.reason) ?? 0n) + d.count);
  }
  sum.drops = [...drops].map(([reason, count]) => ({ reason, count }));
  return sum;
}

/**
 * Declares the HA pair's VIPs (addresses without prefix length): sockets may bind them before
 * this node owns them (IP_FREEBIND). Must come before a device binds a VIP.
 */
export function setFloatingAddresses(addresses: string[]): void {
  try {
    loadBinding().setFloatingAddresses(addresses);
  } catch (e) {
    throw fromNative(e);
  }
}

export type HaSyncOptions = BindingHaSyncOptions;
export type HaSyncEvent = BindingHaEvent;
export type HaSyncStatus = BindingHaStatus;

/** The data planes' sync channel of an active-passive pair (docs/ha.md), native errors as `CvlanError`. */
export class HaSync {
  readonly #native: BindingHaSync;

  constructor(options: HaSyncOptions, onEvent: (ev: HaSyncEvent) => void) {
    try {
      this.#native = new (loadBinding().HaSync)(options, onEvent);
    } catch (e) {
      throw fromNative(e);
    }
  }

  attachWireguard(device: WireGuardDevice): void {
    device.attachTo(this.#native);
  }
  detachWireguard(device: WireGuardDevice): void {
    device.detachFrom(this.#native);
  }
  /** ESP SAs and outbound policies synced (active) or imported (standby); passive as standby. */
  attachIpsec(device: IpsecDevice): void {
    device.attachTo(this.#native);
  }
  detachIpsec(device: IpsecDevice): void {
    device.detachFrom(this.#native);
  }
  setGeneration(generation: number): void {
    this.#call(() => this.#native.setGeneration(generation));
  }
  setRole(role: BindingHaRole): void {
    this.#call(() => this.#native.setRole(role));
  }
  status(): HaSyncStatus {
    return this.#call(() => this.#native.status());
  }
  close(): void {
    this.#native.close();
  }

  #call<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw fromNative(e);
    }
  }
}
