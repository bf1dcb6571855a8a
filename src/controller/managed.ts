/**
 * `cvlan-vrouter run` under a controller (`[controller] url` set, no `--config`): the daemon
 * whose configuration comes from `ControllerLoop`.
 *
 *   1. The stored last known good (`<state dir>/applied.json`) starts the data plane at once,
 *      before the controller is asked anything: a restart while the controller is away keeps
 *      forwarding. Without one, the first generation the controller sends starts it.
 *   2. Each new generation goes the SIGHUP way: loadDesiredState (validate) → Vrouter.reconcile
 *      (plan, apply) → storeApplied; a refusal keeps the running state and is reported with
 *      field and reason.
 *   3. Status (tunnels, peers, counters, applied and refused generations) goes back after every
 *      change and periodically.
 *   4. SIGHUP reads the local TOML again and reconciles the running documents with it (the host's
 *      `[network]`, `[ipsec]` settings live); generations and reloads apply one at a time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { startAdminServer, type AdminServer } from '../api/server.js';
import type { EventStream } from '../api/events.js';
import { configVersion, loadDesiredState } from '../config/load.js';
import { loadLocalToml } from '../config/local.js';
import { disposeDesiredState, type DesiredState, type LocalConfig } from '../config/model.js';
import { ConfigError, CvlanError } from '../errors.js';
import { eventLog } from '../log.js';
import { loadApplied, storeApplied } from '../reconcile/store.js';
import { loadOrCreateSealKeypair, SECRETS_KEY_FILE } from '../secrets/sealed.js';
import { Vrouter } from '../daemon/vrouter.js';
import { ControllerClient } from './client.js';
import { CREDENTIAL_FILE, readCredential } from './credential.js';
import { ControllerLoop, type ApplyResult } from './loop.js';
import type { StatusReport } from './protocol.js';
import { loadGeneration, storeGeneration } from './store.js';

export interface ManagedOptions {
  local: LocalConfig;
  /** The file `local` was read from: read again on SIGHUP (`[network]`, `[ipsec]` apply live). */
  localPath?: string;
  runtimeDir?: string;
  /** Overrides `[admin] socket`; `null` serves no admin socket. */
  adminSocket?: string | null;
}

/** A WireGuard peer counts as up while its latest handshake is younger than this (RFC-less: WireGuard's REJECT_AFTER_TIME). */
const PEER_UP_S = 180;

/** Tunnels, peers and counters of a running vrouter, in the StatusReport's shape. */
export function observeVrouter(v: Vrouter | undefined, now = Date.now()): Pick<StatusReport, 'tunnels' | 'peers' | 'counters'> {
  if (!v) return { tunnels: [], peers: [], counters: { udp_rx_bytes: 0, udp_tx_bytes: 0, tun_rx_bytes: 0, tun_tx_bytes: 0, translated: 0, dropped: 0 } };
  const s = v.summary();
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  return {
    tunnels: s.tunnels.map((t) => ({
      id: t.id,
      tenant: t.tenant,
      state: t.state,
      child_sas: t.child_sas.length,
      bytes_in: sum(t.child_sas.map((c) => c.bytes_in)),
      bytes_out: sum(t.child_sas.map((c) => c.bytes_out)),
      packets_in: sum(t.child_sas.map((c) => c.packets_in)),
      packets_out: sum(t.child_sas.map((c) => c.packets_out)),
    })),
    peers: s.peers.map((p) => ({
      public_key: p.public_key,
      tenant: p.tenant,
      state: p.latest_handshake !== null && now - Date.parse(p.latest_handshake) < PEER_UP_S * 1000 ? 'up' : 'down',
      endpoint: p.endpoint,
      latest_handshake: p.latest_handshake,
      rx_bytes: p.rx_bytes,
      tx_bytes: p.tx_bytes,
    })),
    counters: {
      udp_rx_bytes: Number(s.workers.udpRxBytes),
      udp_tx_bytes: Number(s.workers.udpTxBytes),
      tun_rx_bytes: Number(s.workers.tunRxBytes),
      tun_tx_bytes: Number(s.workers.tunTxBytes),
      translated: Number(s.workers.translated),
      dropped: Number(s.workers.drops.reduce((a, d) => a + d.count, 0n)),
    },
  };
}

function issuesOf(e: unknown): { field: string; reason: string }[] {
  if (e instanceof ConfigError) return e.issues.map((i) => ({ field: i.path || 'document', reason: i.reason }));
  return [{ field: 'document', reason: e instanceof CvlanError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e) }];
}

/** Local TOML sections `runManaged` reads once, at start (the client, the admin API, the state dir). */
const AT_START = ['controller', 'admin', 'state'] as const;

export async function runManaged(o: ManagedOptions, log: Logger, eventStream?: EventStream): Promise<number> {
  /** The local settings in force; SIGHUP replaces all but the `AT_START` sections. */
  let local = o.local;
  const stateDir = local.state.dir;
  const url = local.controller.url!;
  const events = eventLog(log);
  const keypair = loadOrCreateSealKeypair(join(stateDir, SECRETS_KEY_FILE));
  const credentialPath = local.controller.credentialFile ?? join(stateDir, CREDENTIAL_FILE);
  const credential = readCredential(credentialPath);
  if (!credential) throw new CvlanError('CVLAN_ERR_CONFIG', `no controller credential in ${credentialPath}; register first: cvlan-vrouter init --controller ${url} --token TOKEN`);
  if (credential.url !== url) throw new CvlanError('CVLAN_ERR_CONFIG', `the credential in ${credentialPath} is for ${credential.url}, [controller] url is ${url}; run cvlan-vrouter init again`);
  let ca: string | undefined;
  if (local.controller.ca !== undefined) {
    try {
      ca = readFileSync(local.controller.ca, 'utf8');
    } catch (e) {
      throw new CvlanError('CVLAN_ERR_CONFIG', `controller.ca ${local.controller.ca}: ${(e as Error).message}`, { cause: e });
    }
  }
  const runtimeDir = o.runtimeDir ?? join(stateDir, 'run');
  const client = new ControllerClient({ url, ...(ca !== undefined ? { ca } : {}) });
  let vrouter: Vrouter | undefined;
  let admin: AdminServer | undefined;
  let applied: { generation: number; etag: string; version: string } | undefined;
  /** The controller documents running now (a SIGHUP applies them again with new local settings). */
  let documents: unknown[] | undefined;
  /** Generations and SIGHUP reloads reconcile one at a time. */
  let serial: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(f: () => Promise<T>): Promise<T> => {
    const next = serial.then(f, f);
    serial = next.catch(() => undefined);
    return next;
  };

  const ready = async (generation: number | null): Promise<void> => {
    const v = vrouter!;
    const socketPath = o.adminSocket !== undefined ? o.adminSocket : local.admin.socket;
    if (socketPath !== null) {
      try {
        admin = await startAdminServer({ source: v, control: v, socketPath, logger: log, ...(eventStream ? { events: eventStream } : {}) });
      } catch (e) {
        // The configuration runs; an admin socket that cannot open is no reason to stop forwarding.
        log.error({ err: (e as Error).message, socket: socketPath }, 'the admin API cannot start; forwarding goes on');
      }
    }
    const wg = v.wireguard;
    process.stdout.write(
      `${JSON.stringify({
        event: 'ready',
        version: configVersion(v.state),
        controller: { url, vrouter_id: credential.vrouterId, generation },
        admin_socket: admin?.socketPath ?? null,
        wireguard: wg ? { interface: wg.tunName, listen_port: wg.listenPort, public_key: v.state.tenants[0]?.wireguard?.publicKey ?? null } : null,
        ipsec: v.ipsec ? { interface: v.ipsec.device.tunName, ike_port: v.ipsec.device.ikePort, nat_port: v.ipsec.device.natPort } : null,
      })}\n`,
    );
  };

  // 1. The last known good first: forwarding does not wait for the controller.
  const stored = loadApplied(stateDir);
  if (stored) {
    const state = loadDesiredState({ controllerDocs: stored.documents, localToml: local, secretsKey: keypair });
    const version = configVersion(state);
    applied = loadGeneration(stateDir, version);
    // [ha] compares the controller's generation with the peer's.
    vrouter = await Vrouter.start(state, { logger: log, runtimeDir, haGeneration: applied?.generation ?? 0 });
    documents = stored.documents;
    log.info({ event: 'controller_last_known_good', saved_at: stored.savedAt, generation: applied?.generation ?? null, version }, 'running the last known good configuration');
    await ready(applied?.generation ?? null);
  }

  // 2. validate → plan → apply → store, for each generation the loop brings.
  const apply = (generation: number, document: unknown, etag: string): Promise<ApplyResult> => oneAtATime(() => applyGeneration(generation, document, etag));
  const applyGeneration = async (generation: number, document: unknown, etag: string): Promise<ApplyResult> => {
    let next: DesiredState;
    try {
      next = loadDesiredState({ controllerDocs: [document], localToml: local, secretsKey: keypair });
      if (next.vrouterId !== undefined && next.vrouterId !== credential.vrouterId) {
        const id = next.vrouterId;
        disposeDesiredState(next);
        throw new ConfigError([{ path: 'vrouter_id', reason: `${JSON.stringify(id)} is not this vrouter (${credential.vrouterId})` }]);
      }
    } catch (e) {
      events.configRefused({ tenant: null, version: null, reason: (e as Error).message, issues: issuesOf(e).map((i) => ({ path: i.field, reason: i.reason })) });
      return { applied: false, issues: issuesOf(e) };
    }
    const version = configVersion(next);
    try {
      if (!vrouter) {
        vrouter = await Vrouter.start(next, { logger: log, runtimeDir, haGeneration: generation });
        await ready(generation);
      } else {
        const prev = vrouter.state;
        await vrouter.reconcile(next);
        vrouter.setHaGeneration(generation);
        disposeDesiredState(prev);
      }
    } catch (e) {
      events.configRefused({ tenant: null, version, reason: e instanceof Error ? e.message : String(e), issues: issuesOf(e).map((i) => ({ path: i.field, reason: i.reason })) });
      disposeDesiredState(next);
      return { applied: false, issues: issuesOf(e) };
    }
    documents = [document];
    try {
      storeApplied(stateDir, [document], keypair, version);
      storeGeneration(stateDir, { generation, etag, version });
    } catch (e) {
      // Forwarding goes on; only a restart without the controller would miss this generation.
      log.error({ err: (e as Error).message }, 'cannot store the applied configuration');
    }
    return { applied: true, version };
  };

  /**
   * SIGHUP: the local TOML read again and the running documents reconciled with it, so
   * `[network] listen_address` or `[ipsec] esp_encapsulation` change without a restart. A file
   * that does not validate, or a change that fails, is refused and logged; the running state stays.
   */
  const reloadLocal = async (): Promise<void> => {
    if (o.localPath === undefined) return;
    let read: LocalConfig;
    try {
      read = loadLocalToml(o.localPath);
    } catch (e) {
      events.configRefused({ tenant: null, version: null, reason: (e as Error).message, issues: issuesOf(e).map((i) => ({ path: i.field, reason: i.reason })) });
      return;
    }
    const atStart = AT_START.filter((k) => JSON.stringify(read[k]) !== JSON.stringify(local[k]));
    if (atStart.length > 0) log.warn({ event: 'local_settings_at_start', sections: atStart }, 'these local settings take effect at the next start');
    const next: LocalConfig = { ...read, controller: local.controller, admin: local.admin, state: local.state };
    if (!vrouter || documents === undefined) {
      local = next;
      return;
    }
    let state: DesiredState;
    try {
      state = loadDesiredState({ controllerDocs: documents, localToml: next, secretsKey: keypair });
    } catch (e) {
      events.configRefused({ tenant: null, version: null, reason: (e as Error).message, issues: issuesOf(e).map((i) => ({ path: i.field, reason: i.reason })) });
      return;
    }
    const prev = vrouter.state;
    try {
      await vrouter.reconcile(state);
      disposeDesiredState(prev);
      local = next;
      log.info({ event: 'local_settings_applied', version: configVersion(state) }, 'local settings applied');
    } catch (e) {
      events.configRefused({ tenant: null, version: configVersion(state), reason: e instanceof Error ? e.message : String(e), issues: issuesOf(e).map((i) => ({ path: i.field, reason: i.reason })) });
      disposeDesiredState(state);
    }
  };

  const loop = new ControllerLoop({
    client,
    credential,
    credentialPath,
    apply,
    observe: () => observeVrouter(vrouter),
    ...(applied ? { applied } : {}),
    pollWaitS: local.controller.pollInterval,
    statusIntervalS: local.controller.statusInterval,
    backoff: { baseMs: 1000, maxMs: local.controller.backoffMax * 1000 },
    logger: log,
  });
  loop.start();
  log.info({ event: 'controller_loop_started', url, vrouter_id: credential.vrouterId }, 'controller client started');

  return await new Promise<number>((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      clearInterval(keepAlive);
      void (async () => {
        await loop.stop();
        await admin?.close().catch(() => undefined);
        if (vrouter) {
          await vrouter.stop();
          disposeDesiredState(vrouter.state);
        }
        log.info({ signal }, 'stopped');
        resolve(0);
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGUSR1', () => vrouter && log.info({ workers: vrouter.workers(), drops: vrouter.drops() }, 'stats'));
    // A reload under a controller: the local settings again (the documents are the controller's),
    // then a fresh report.
    process.on('SIGHUP', () => {
      void oneAtATime(reloadLocal).then(() => loop.report());
    });
  });
}
