/**
 * The daemon's half of an active-passive pair (`[ha]`, docs/ha.md): what `Vrouter` does with
 * `[ha]`, kept out of the apply code.
 *
 *   before any device binds   the VIPs declared floating (the standby binds them too, IP_FREEBIND)
 *   every WireGuard device    bound to `network.listen_address` (a VIP) and attached to the sync
 *                             channel, a device replaced by a reconcile included
 *   after the devices         HaNode: the sync channel, then keepalived (VRRP, the VIP), standby
 *                             until elected; the configuration generation compared with the peer's
 *   the IPsec service         charon loads the `ha` plugin (loopback, relayed by the sync channel);
 *                             the device's SAs attached to the sync channel (sequence numbers,
 *                             replay windows); the role drives charon's segment through its FIFO
 *   stop                      first: keepalived stopped by its PID (it releases the VIP), the data
 *                             plane passive, the sync channel closed
 *
 * IPsec under `[ha]` needs both halves of the IPsec state: charon's `ha` plugin for IKE
 * (`ha.charon_ha`, on by default; refused without it) and the data plane's ESP sync (sequence
 * numbers and replay windows, which the plugin does not carry).
 */
import { createHmac } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import type { DesiredState, HaConfig } from '../config/model.js';
import { HaSync, setFloatingAddresses, type WireGuardDevice } from '../dataplane/index.js';
import type { IpsecService } from '../ipsec/service.js';
import { charonHaSettings } from '../ha/charon-ha.js';
import type { EventLog } from '../log.js';
import { HaNode } from '../ha/node.js';
import { readSyncKey } from '../ha/sync-key.js';
import type { HaView } from '../ha/view.js';

/** Why this build cannot run `state` as one node of a pair; undefined when it can (or without `[ha]`). */
export function haRefusal(state: DesiredState, running?: DesiredState): ConfigError | undefined {
  const ha = state.local.ha;
  if (running && !isDeepStrictEqual(running.local.ha, ha)) {
    return new ConfigError([{ path: 'ha', reason: 'cannot change while running (keepalived, the sync channel and the bound VIP are set up at start); restart the daemon to apply it' }]);
  }
  if (!ha) return undefined;
  if (state.local.network.listenAddress === undefined) {
    return new ConfigError([{ path: 'network.listen_address', reason: 'missing; with [ha] the data plane binds the VIP peers reach the pair on (one of ha.vips), so that replies leave from it' }]);
  }
  const i = state.tenants.findIndex((t) => t.tunnels.length > 0 || t.remoteAccess !== undefined);
  if (i < 0) return undefined;
  const what = state.tenants[i]!.tunnels.length > 0 ? 'tunnels' : 'remote_access';
  if (!ha.charonHa) {
    return new ConfigError([
      {
        path: 'ha.charon_ha',
        reason: `false while tenants[${i}].${what} needs IKE: the standby's charon would hold no IKE_SA, so a takeover would drop every IPsec peer; set it to true (the default) or remove the IPsec configuration`,
      },
    ]);
  }
  return undefined;
}

/**
 * A configuration generation both nodes compute alike from the same controller documents: the
 * first 48 bits of HMAC-SHA256 under the sync key (the pair's shared secret; an unkeyed digest of
 * documents holding secrets would be shown in `/v1/ha`). Under a controller, its generation number
 * is used instead.
 */
export function documentsGeneration(documents: readonly unknown[], syncKeyFile: string): number {
  const key = readSyncKey(syncKeyFile);
  try {
    return createHmac('sha256', key.bytes).update(JSON.stringify(documents)).digest().readUIntBE(0, 6);
  } finally {
    key.dispose();
  }
}

/** Addresses without their prefix length. */
function vipAddresses(ha: HaConfig): string[] {
  return [...ha.vips, ...ha.privateVips].map((v) => v.split('/')[0]!);
}

export class DaemonHa {
  readonly #ha: HaConfig;
  readonly #node: HaNode;
  #sync: HaSync | undefined;
  /** Devices opened before the sync channel exists; attached when it comes. */
  readonly #devices = new Set<WireGuardDevice>();
  /** The IPsec service while one runs: its device's SAs under the sync channel, its charon's FIFO. */
  #ipsec: IpsecService | undefined;

  /**
   * Declares the VIPs floating; call before any device binds. `onCharonSegment`: charon's segment
   * was switched (its IKE_SAs changed state without an ike-updown event).
   */
  constructor(ha: HaConfig, o: { stateDir: string; generation: number; events: EventLog; logger: Logger; onCharonSegment?: () => void }) {
    setFloatingAddresses(vipAddresses(ha));
    this.#ha = ha;
    this.#node = new HaNode({
      // With charon_ha the relay runs from the start: charon may come with a later reload.
      ha,
      stateDir: o.stateDir,
      generation: o.generation,
      events: o.events,
      logger: o.logger,
      charonPid: () => this.#ipsec?.supervisor.pid,
      syncFactory: (options, onEvent) => {
        const sync = new HaSync(options, onEvent);
        // Before any role is set: the standby holds the devices' sessions from the first snapshot.
        for (const d of this.#devices) if (!d.closed) sync.attachWireguard(d);
        if (this.#ipsec) sync.attachIpsec(this.#ipsec.device);
        this.#sync = sync;
        return sync;
      },
    });
    this.#node.on('role', (r) => o.logger.info({ from: r.from, to: r.to, reason: r.reason }, `HA role ${r.to}`));
    this.#node.on('charon', () => o.onCharonSegment?.());
  }

  /** charon's `ha` plugin for the IPsec service's charon (`IpsecServiceOptions.extraPlugins`); none without charon_ha. */
  charonPlugins(): { name: string; settings: Record<string, string | number | boolean> }[] {
    if (!this.#ha.charonHa) return [];
    const c = charonHaSettings(this.#ha);
    return [{ name: c.plugin, settings: c.settings }];
  }

  /**
   * The IPsec service started: its SAs go under the sync channel (a standby's device is passive
   * and takes the active's sequence numbers), and every (re)start of its charon gets the segment
   * driven to the role again (a new charon starts with it inactive).
   */
  ipsecStarted(svc: IpsecService): void {
    this.#ipsec = svc;
    this.#sync?.attachIpsec(svc.device);
    svc.supervisor.on('ready', () => this.#node.charonRestarted());
  }

  /** Before the IPsec service closes. */
  ipsecStopping(svc: IpsecService): void {
    if (this.#ipsec !== svc) return;
    this.#ipsec = undefined;
    if (!svc.device.closed) this.#sync?.detachIpsec(svc.device);
  }

  /** A WireGuard device opened (at start or by a reconcile that replaced one): under HA from now on. */
  attach(device: WireGuardDevice): void {
    for (const d of this.#devices) if (d.closed) this.#devices.delete(d);
    this.#devices.add(device);
    this.#sync?.attachWireguard(device);
  }

  /**
   * A device about to close (a reconcile replaces it): out of the sync channel first, which
   * installs a synced session on the attached engine that has the session's peer — a closed
   * device must not take the sessions meant for its replacement.
   */
  detach(device: WireGuardDevice): void {
    this.#devices.delete(device);
    if (!device.closed) this.#sync?.detachWireguard(device);
  }

  /** The sync channel and keepalived; standby until VRRP elects this node. */
  async start(): Promise<void> {
    await this.#node.start();
  }

  setGeneration(generation: number): void {
    this.#node.setGeneration(generation);
  }

  view(): HaView {
    return this.#node.view();
  }

  async stop(): Promise<void> {
    await this.#node.stop();
    this.#sync = undefined;
    this.#ipsec = undefined;
    this.#devices.clear();
  }
}
