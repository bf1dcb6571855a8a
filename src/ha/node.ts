/**
 * One node of an active-passive pair: keepalived (VRRP, the VIP) supervised, its role changes
 * read from the notify FIFO, the sync channel's view of the peer, and the role decision
 * (role.ts) applied in this order on every change:
 *
 *   fence (track_file) → data plane (HaSync.setRole) → charon's ha segment (FIFO) → log, metrics
 *
 * Going standby is applied before anything else can send; going active only once no fence holds.
 * Nothing here is on a packet path: the data plane keeps forwarding (or staying silent) on its
 * own while the control plane decides.
 */

import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import type { HaConfig } from '../config/model.js';
import type { EventLog } from '../log.js';
import type { EngineLogger, EngineSupervisor } from '../supervise/engine.js';
import { charonHaFifoPath, charonHaSettings, resyncCharonHaSegment, setCharonHaSegment } from './charon-ha.js';
import { keepalivedFiles, keepalivedSupervisor, writeFence, type KeepalivedFiles } from './keepalived.js';
import { VRRP_INSTANCE } from './keepalived-conf.js';
import { NotifyFifo, type VrrpState } from './notify-fifo.js';
import { decideRole, peerSilent, type FenceReason, type HaRole, type RoleInputs } from './role.js';
import type { HaSyncEvent, HaSyncFactory, HaSyncHandle, HaSyncStatus } from './sync.js';
import type { HaView } from './view.js';
import { readSyncKey } from './sync-key.js';

export interface HaNodeOptions {
  ha: HaConfig;
  stateDir: string;
  /** The configuration generation this node runs (compared with the peer's before a takeover). */
  generation: number;
  events: EventLog;
  logger?: EngineLogger;
  /** Builds the data planes' sync channel; absent: VRRP and fencing only, no state sync. */
  syncFactory?: HaSyncFactory;
  /** charon's PID (its FIFO lives in charon's mount namespace); undefined while charon is down. */
  charonPid?: () => number | undefined;
  /** Re-evaluation interval while nothing is reported, ms (picks up the peer's role from status()). Default 200. */
  pollIntervalMs?: number;
}

export interface HaNodeEvents {
  role: [{ from: HaRole | null; to: HaRole; reason: string }];
  /** A command reached charon's ha plugin (its IKE_SAs change state without an ike-updown event). */
  charon: [{ op: 'activate' | 'deactivate' | 'resync' }];
}

export class HaNode extends EventEmitter<HaNodeEvents> {
  readonly files: KeepalivedFiles;
  private readonly opts: HaNodeOptions;
  private readonly fifo: NotifyFifo;
  private keepalived: EngineSupervisor | null = null;
  private sync: HaSyncHandle | null = null;
  private vrrp: VrrpState | 'UNKNOWN' = 'UNKNOWN';
  private role: HaRole | null = null;
  private roleSince = new Date();
  private fence: FenceReason | null = null;
  private generation: number;
  /** The peer's last word, kept after it went away (role.ts needs it for the generation rule). */
  private peerRole: HaRole | null = null;
  private peerGeneration: number | null = null;
  private peerConnected = false;
  private peerEverSeen = false;
  /** Connected, but silent as long as VRRP (the link both run over is cut): as good as lost. */
  private peerSilent = false;
  private takeovers = 0;
  private generationRefusals = 0;
  /** charon's segment: what the role wants, what was last written to this charon's FIFO. */
  private charonWanted: boolean | null = null;
  private charonApplied: boolean | null = null;
  /** The peer (re)joined while this node is active: charon pushes its cache to it. */
  private charonResyncWanted = false;
  private charonBusy = false;
  private charonAttempts = 0;
  private charonTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: HaNodeOptions) {
    super();
    this.opts = opts;
    this.generation = opts.generation;
    this.files = keepalivedFiles(opts.stateDir);
    this.fifo = new NotifyFifo(this.files.notifyFifo);
  }

  /** The `charon.plugins.ha` settings for the strongswan.conf, or null when charon_ha is off. */
  charonSettings(): ReturnType<typeof charonHaSettings> | null {
    return this.opts.ha.charonHa ? charonHaSettings(this.opts.ha) : null;
  }

  /**
   * Starts standby: the sync channel first (so the peer's role is known before VRRP can elect
   * this node), then keepalived. Throws CVLAN_ERR_HA / CVLAN_ERR_CONFIG on a setup problem.
   */
  async start(): Promise<void> {
    const ha = this.opts.ha;
    this.apply({ role: 'standby', fence: null }, 'starting');
    if (this.opts.syncFactory) {
      const key = readSyncKey(ha.syncKeyFile);
      try {
        const host = (a: string) => (a.includes(':') ? `[${a}]` : a);
        const relay = this.charonSettings()?.relay;
        this.sync = this.opts.syncFactory(
          {
            listen: `${host(ha.localAddress)}:${ha.syncPort}`,
            peer: `${host(ha.peerAddress)}:${ha.syncPort}`,
            key: key.bytes,
            nodeId: ha.nodeId,
            syncIntervalMs: ha.syncIntervalMs,
            leaseMessages: ha.leaseMessages,
            ...(relay ? { relay } : {}),
          },
          (ev) => this.onSyncEvent(ev),
        );
      } finally {
        key.dispose();
      }
      this.sync.setGeneration(this.generation);
      this.sync.setRole('standby');
    }
    this.fifo.on('notice', (n) => {
      if (n.type !== 'INSTANCE' || n.name !== VRRP_INSTANCE) return;
      this.vrrp = n.state;
      this.evaluate(`VRRP ${n.state}`);
    });
    this.fifo.on('unknown', (line) => this.opts.logger?.debug({ line }, 'keepalived notify line not understood'));
    mkdirSync(this.files.dir, { recursive: true, mode: 0o700 });
    this.fifo.open();
    writeFence(this.files, false);
    this.keepalived = keepalivedSupervisor(ha, this.files, this.opts.logger);
    this.keepalived.on('exited', () => {
      // A dead keepalived holds no VIP (it removes it on SIGTERM; a killed one leaves it, but
      // then it no longer answers ARP for it after the peer's gratuitous ARP): stop serving.
      this.vrrp = 'STOP';
      this.evaluate('keepalived exited');
    });
    await this.keepalived.start();
    this.pollTimer = setInterval(() => this.evaluate('poll'), this.opts.pollIntervalMs ?? 200);
    this.pollTimer.unref();
  }

  /** A new configuration generation was applied on this node. */
  setGeneration(generation: number): void {
    this.generation = generation;
    this.sync?.setGeneration(generation);
    this.evaluate('configuration generation changed');
  }

  get currentRole(): HaRole {
    return this.role ?? 'standby';
  }

  view(): HaView {
    const s = this.syncStatus();
    const n = (v: number | bigint | undefined) => Number(v ?? 0);
    return {
      node_id: this.opts.ha.nodeId,
      role: this.currentRole,
      vrrp_state: this.vrrp,
      fenced: this.fence !== null,
      fence_reason: this.fence,
      priority: this.opts.ha.priority,
      preempt: this.opts.ha.preempt,
      vips: [...this.opts.ha.vips, ...this.opts.ha.privateVips],
      peer: this.opts.ha.peerAddress,
      generation: this.generation,
      peer_connected: this.peerConnected,
      peer_role: this.peerRole,
      peer_generation: this.peerGeneration,
      last_sync_age_ms: s?.lastSyncAgeMs ?? null,
      synced_wireguard_sessions: s?.syncedWgSessions ?? 0,
      synced_esp_sas: s?.syncedEspSas ?? 0,
      sync_frames_sent: n(s?.framesSent),
      sync_frames_received: n(s?.framesReceived),
      sync_rejected_forged: n(s?.rejectedForged),
      sync_rejected_replayed: n(s?.rejectedReplayed),
      lease_exhausted: n(s?.leaseExhausted),
      takeovers: this.takeovers,
      generation_refusals: this.generationRefusals,
      keepalived_pid: this.keepalived?.pid ?? null,
      keepalived_starts: this.keepalived?.starts ?? 0,
      charon_ha: this.opts.ha.charonHa,
      sync_channel: this.sync !== null,
      role_since: this.roleSince.toISOString(),
    };
  }

  /** Stops keepalived (it releases the VIP), goes passive, closes the sync channel. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.charonTimer) clearTimeout(this.charonTimer);
    await this.keepalived?.stop();
    this.sync?.setRole('standby');
    this.sync?.close();
    this.sync = null;
    this.fifo.close();
  }

  private syncStatus(): HaSyncStatus | null {
    if (!this.sync) return null;
    try {
      return this.sync.status();
    } catch {
      return null;
    }
  }

  private onSyncEvent(ev: HaSyncEvent): void {
    if (ev.kind === 'peer-up') {
      this.peerEverSeen = true;
      this.opts.events.haSync({ state: 'up', reason: ev.reason ?? 'authenticated' });
      // The peer's charon asked for a resync when it started, most likely before the channel was
      // up to carry the request: the active charon pushes everything now.
      if (this.role === 'active') this.resyncCharon();
    } else if (ev.kind === 'peer-down') {
      this.opts.events.haSync({ state: 'down', reason: ev.reason ?? 'connection lost' });
    } else if (ev.kind === 'rejected') {
      this.opts.events.haSync({ state: 'rejected', reason: ev.reason ?? 'frame rejected' });
    }
    this.evaluate(`sync ${ev.kind}`);
  }

  private evaluate(trigger: string): void {
    if (this.closed) return;
    const s = this.syncStatus();
    if (s) {
      this.peerConnected = s.peerConnected;
      if (s.peerConnected) {
        this.peerEverSeen = true;
        if (s.peerRole != null) this.peerRole = s.peerRole;
        if (s.peerGeneration != null) this.peerGeneration = s.peerGeneration;
      }
    }
    const inputs: RoleInputs = {
      vrrp: this.vrrp,
      fenced: this.fence !== null,
      currentRole: this.role,
      sync: { peerConnected: this.peerConnected, peerRole: this.peerRole, peerGeneration: this.peerGeneration, lastFrameAgeMs: s?.lastSyncAgeMs ?? null },
      // VRRP elects this node 3 adverts (+ skew) after the last one it heard, sent at most one
      // advert before the peer's last sync frame; a live channel brings a heartbeat every interval.
      peerSilentAfterMs: Math.max(2 * this.opts.ha.advertIntervalMs, 3 * this.opts.ha.syncIntervalMs),
      generation: this.generation,
      localAddress: this.opts.ha.localAddress,
      peerAddress: this.opts.ha.peerAddress,
    };
    this.peerSilent = this.peerConnected && peerSilent(inputs);
    this.apply(decideRole(inputs), trigger);
  }

  private apply(d: { role: HaRole; fence: FenceReason | null }, trigger: string): void {
    if (d.fence !== this.fence) {
      const was = this.fence;
      this.fence = d.fence;
      if (this.role !== null) writeFence(this.files, d.fence !== null);
      if (d.fence === 'generation-mismatch') this.generationRefusals += 1;
      this.opts.events.haFence({
        fenced: d.fence !== null,
        reason:
          d.fence === 'generation-mismatch'
            ? `the active peer ran configuration generation ${this.peerGeneration}, this node ${this.generation}: refusing to take over`
            : d.fence === 'peer-active'
              ? 'the sync channel shows a live active peer: not claiming the VIP'
              : `lifted (${was ?? 'none'} no longer holds)`,
      });
    }
    if (d.role === this.role) return;
    const from = this.role;
    this.role = d.role;
    this.roleSince = new Date();
    const reason = this.reason(d.role, trigger);
    // Standby first stops the data plane from sending; active jumps the counters and sends.
    this.sync?.setRole(d.role);
    if (d.role === 'active' && from === 'standby' && this.peerEverSeen) {
      this.takeovers += 1;
      this.peerRole = 'standby';
      this.opts.events.haFailover({ from_role: 'standby', to_role: 'active', reason });
    } else if (d.role === 'standby' && from === 'active') {
      this.opts.events.haFailover({ from_role: 'active', to_role: 'standby', reason });
    }
    this.opts.events.haRole({ from_role: from, to_role: d.role, vrrp: this.vrrp, reason });
    this.setCharon(d.role === 'active');
    this.emit('role', { from, to: d.role, reason });
  }

  private reason(role: HaRole, trigger: string): string {
    if (trigger === 'starting') return 'starting as standby';
    if (role === 'active') {
      if (!this.peerEverSeen) return `VRRP elected this node (${trigger}; no sync peer seen yet)`;
      if (this.peerSilent) return `peer lost on VRRP, the sync channel silent (${trigger})`;
      return this.peerConnected ? `VRRP elected this node (${trigger})` : `peer lost on VRRP and the sync channel (${trigger})`;
    }
    if (this.fence) return `fenced: ${this.fence}`;
    return `VRRP ${this.vrrp} (${trigger})`;
  }

  /**
   * A (re)started charon holds its segment inactive (ha_segments.c): drive it to the role again.
   * Call when charon's VICI is back after a restart.
   */
  charonRestarted(): void {
    this.charonApplied = null;
    this.driveCharon();
  }

  private setCharon(active: boolean): void {
    if (!this.opts.ha.charonHa || !this.opts.charonPid) return;
    this.charonWanted = active;
    if (!active) this.charonResyncWanted = false;
    this.driveCharon();
  }

  private resyncCharon(): void {
    if (!this.opts.ha.charonHa || !this.opts.charonPid) return;
    this.charonResyncWanted = true;
    this.driveCharon();
  }

  /**
   * Writes one FIFO command at a time until charon's segment matches the role (and a wanted resync
   * is done), retrying while charon (and its FIFO reader) is not up. The plugin reads one buffer
   * per open, so commands go out 100 ms apart: two in one read would lose the second.
   */
  private driveCharon(): void {
    if (this.charonBusy || this.closed || this.charonWanted === null) return;
    const active = this.charonWanted;
    const op = active !== this.charonApplied ? (active ? 'activate' : 'deactivate') : this.charonResyncWanted && active ? 'resync' : null;
    // No charon (no IPsec configured, or between restarts): charonRestarted() drives it when it comes.
    const pid = this.opts.charonPid?.();
    if (op === null || pid === undefined) return;
    this.charonBusy = true;
    const path = charonHaFifoPath(pid);
    const write = op === 'resync' ? resyncCharonHaSegment(path) : setCharonHaSegment(path, active);
    write.then(
      () => {
        if (op === 'resync') this.charonResyncWanted = false;
        else this.charonApplied = active;
        this.charonAttempts = 0;
        this.opts.logger?.info({ op, path }, 'charon HA segment command written');
        this.emit('charon', { op });
      },
      (err: Error) => {
        if (this.charonAttempts++ % 20 === 0) this.opts.logger?.warn({ op, path, err: err.message }, 'charon HA segment command not written yet, retrying');
      },
    ).finally(() => {
      this.charonTimer = setTimeout(() => {
        this.charonTimer = null;
        this.charonBusy = false;
        this.driveCharon();
      }, 100);
      this.charonTimer.unref();
    });
  }
}
