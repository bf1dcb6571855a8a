/**
 * `cvlan-vrouter run [--config FILE] [--local TOML] [--runtime-dir DIR]`: the daemon. With
 * `[controller] url` set and no `--config`, the controller manages it (`../controller/managed.ts`);
 * otherwise standalone mode. Loads and validates the controller JSON and the local TOML, applies them (`Vrouter`),
 * stores what was applied (`../reconcile/store.ts`, secrets sealed) so a restart without the file
 * comes back with it, serves the admin API and /metrics on the unix socket of `[admin]`, and logs
 * JSON lines.
 *
 *   SIGTERM / SIGINT   tunnels terminated, charon stopped, devices closed, exit 0
 *   SIGHUP             the files are read again; a valid state is reconciled (only what changed),
 *                      an invalid one is refused with field and reason and the running one stays
 *   SIGUSR1            one `stats` log line
 *
 * Stdout gets one JSON line `{"event":"ready",...}` once everything is applied, so supervisors
 * and tests know when the vrouter forwards.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { startAdminServer, type AdminServer } from '../api/server.js';
import { existsSync } from 'node:fs';
import { loadDesiredState, readJsonFile, configVersion } from '../config/load.js';
import { loadLocalToml, DEFAULT_LOCAL_TOML } from '../config/local.js';
import type { DesiredState } from '../config/model.js';
import { disposeDesiredState } from '../config/model.js';
import { ConfigError, CvlanError } from '../errors.js';
import { loadOrCreateSealKeypair, SECRETS_KEY_FILE, type SealKeypair } from '../secrets/sealed.js';
import { APPLIED_FILE, loadApplied, storeApplied } from '../reconcile/store.js';
import { Vrouter } from '../daemon/vrouter.js';
import { documentsGeneration } from '../daemon/ha.js';
import { eventLog } from '../log.js';
import { EventStream } from '../api/events.js';
import { cliLogger, parseCommand, stringOption } from './args.js';

export const HELP = `usage: cvlan-vrouter run [--config FILE] [--local TOML] [--runtime-dir DIR] [--admin-socket PATH|none]

The vrouter daemon. Applies the controller JSON FILE (else the last applied configuration kept in
the state dir) with the local TOML settings, serves the admin API, logs JSON lines.

options:
  --config FILE          the controller JSON (check it first with \`cvlan-vrouter check\`)
  --local TOML           local settings (default /etc/cvlan-vrouter/vrouter.toml)
  --runtime-dir DIR      charon's runtime files (default <state dir>/run)
  --admin-socket PATH    overrides [admin] socket; \`none\` serves no admin socket
  -h, --help             this text

signals: SIGTERM/SIGINT stop, SIGHUP reloads the files, SIGUSR1 logs one stats line
`;

export async function main(argv: string[]): Promise<number> {
  const args = parseCommand(
    {
      name: 'cvlan-vrouter run',
      help: HELP,
      options: { config: { type: 'string' }, local: { type: 'string' }, 'runtime-dir': { type: 'string' }, 'admin-socket': { type: 'string' } },
    },
    argv,
  );
  if (!args) return 0;
  const v = args.values;
  const [config, local, runtimeDir, adminSocket] = [stringOption(v, 'config'), stringOption(v, 'local'), stringOption(v, 'runtime-dir'), stringOption(v, 'admin-socket')];
  return await runDaemon(
    { ...(config ? { config } : {}), ...(local ? { local } : {}), ...(runtimeDir ? { runtimeDir } : {}), ...(adminSocket ? { adminSocket: adminSocket === 'none' ? null : adminSocket } : {}) },
    ...withEvents(),
  );
}
import { runManaged } from '../controller/managed.js';

export interface RunOptions {
  /** The controller JSON. Without it (or when the file is gone) the stored last applied configuration is used. */
  config?: string;
  local?: string;
  runtimeDir?: string;
  /** Overrides `[admin] socket`; `null` serves no admin socket. */
  adminSocket?: string | null;
}

interface Loaded {
  state: DesiredState;
  /** The documents the state came from, stored (secrets sealed) once the state is applied. */
  documents: unknown[];
  keypair: SealKeypair;
  source: string;
}

function load(o: RunOptions, log: Logger): Loaded {
  const local = loadLocalToml(o.local ?? DEFAULT_LOCAL_TOML);
  const keypair = loadOrCreateSealKeypair(join(local.state.dir, SECRETS_KEY_FILE));
  let documents: unknown[] | undefined;
  let source = '';
  if (o.config !== undefined && (existsSync(o.config) || !loadApplied(local.state.dir))) {
    documents = [readJsonFile(o.config)];
    source = o.config;
  } else {
    const stored = loadApplied(local.state.dir);
    if (!stored) throw new CvlanError('CVLAN_ERR_CONFIG', `no --config given and no stored configuration in ${local.state.dir}`);
    if (o.config !== undefined) log.warn({ config: o.config, stored_version: stored.version }, 'the configuration file is gone; using the last applied configuration');
    documents = stored.documents;
    source = `${local.state.dir}/${APPLIED_FILE} (saved ${stored.savedAt})`;
  }
  return { state: loadDesiredState({ controllerDocs: documents, localToml: local, secretsKey: keypair }), documents, keypair, source };
}

function store(l: Loaded, log: Logger): void {
  try {
    storeApplied(l.state.local.state.dir, l.documents, l.keypair, configVersion(l.state));
  } catch (e) {
    // Forwarding goes on; only a restart without the file would miss this version.
    log.error({ err: (e as Error).message }, 'cannot store the applied configuration');
  }
}

/** With `[ha]`: the generation both nodes compute alike from the same documents (`../daemon/ha.ts`). */
function haGeneration(l: Loaded): number | undefined {
  const ha = l.state.local.ha;
  return ha ? documentsGeneration(l.documents, ha.syncKeyFile) : undefined;
}

function issuesOf(e: unknown): { path: string; reason: string }[] | undefined {
  return e instanceof ConfigError ? e.issues : undefined;
}

/** The daemon's logger, whose event lines the admin API also serves (`/v1/events`). */
function withEvents(): [Logger, EventStream] {
  const events = new EventStream();
  return [cliLogger(process.env, events), events];
}

export async function runDaemon(o: RunOptions, log: Logger, eventStream?: EventStream): Promise<number> {
  if (o.config === undefined) {
    // Under a controller (`cvlan-vrouter init` wrote [controller]), the configuration is its.
    const local = loadLocalToml(o.local ?? DEFAULT_LOCAL_TOML);
    if (local.controller.url !== undefined) {
      return await runManaged({ local, localPath: o.local ?? DEFAULT_LOCAL_TOML, ...(o.runtimeDir !== undefined ? { runtimeDir: o.runtimeDir } : {}), ...(o.adminSocket !== undefined ? { adminSocket: o.adminSocket } : {}) }, log, eventStream);
    }
  }
  const events = eventLog(log);
  let loaded: Loaded;
  try {
    loaded = load(o, log);
  } catch (e) {
    const issues = issuesOf(e);
    events.configRefused({ tenant: null, version: null, reason: (e as Error).message, ...(issues ? { issues } : {}) });
    throw e;
  }
  const state = loaded.state;
  const runtimeDir = o.runtimeDir ?? join(state.local.state.dir, 'run');
  const generation = haGeneration(loaded);
  const vrouter = await Vrouter.start(state, { logger: log, runtimeDir, ...(generation !== undefined ? { haGeneration: generation } : {}) });
  store(loaded, log);
  log.info({ source: loaded.source, version: configVersion(state) }, 'configuration loaded');
  let admin: AdminServer | undefined;
  const socketPath = o.adminSocket !== undefined ? o.adminSocket : state.local.admin.socket;
  if (socketPath !== null) {
    try {
      admin = await startAdminServer({ source: vrouter, control: vrouter, socketPath, logger: log, ...(eventStream ? { events: eventStream } : {}) });
    } catch (e) {
      await vrouter.stop();
      throw e;
    }
  }
  const wg = vrouter.wireguard;
  process.stdout.write(
    `${JSON.stringify({
      event: 'ready',
      version: configVersion(state),
      admin_socket: admin?.socketPath ?? null,
      wireguard: wg ? { interface: wg.tunName, listen_port: wg.listenPort, public_key: state.tenants[0]?.wireguard?.publicKey ?? null } : null,
      ipsec: vrouter.ipsec ? { interface: vrouter.ipsec.device.tunName, ike_port: vrouter.ipsec.device.ikePort, nat_port: vrouter.ipsec.device.natPort } : null,
    })}\n`,
  );

  return await new Promise<number>((resolve) => {
    // Workers and charon live outside the event loop's handles; keep the loop alive.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      clearInterval(keepAlive);
      const last = vrouter.summary();
      void (async () => {
        eventStream?.close();
        await admin?.close().catch(() => undefined);
        await vrouter.stop();
        disposeDesiredState(vrouter.state);
        log.info({ signal, workers: JSON.parse(JSON.stringify(last.workers, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))) as object }, 'stopped');
        resolve(0);
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGUSR1', () => log.info({ workers: vrouter.workers(), drops: vrouter.drops() }, 'stats'));
    let reloading = Promise.resolve();
    process.on('SIGHUP', () => {
      reloading = reloading.then(async () => {
        let next: Loaded;
        try {
          next = load(o, log);
        } catch (e) {
          const issues = issuesOf(e);
          events.configRefused({ tenant: null, version: null, reason: (e as Error).message, ...(issues ? { issues } : {}) });
          return;
        }
        const prev = vrouter.state;
        try {
          await vrouter.reconcile(next.state);
          const generation = haGeneration(next);
          if (generation !== undefined) vrouter.setHaGeneration(generation);
          store(next, log);
          disposeDesiredState(prev);
        } catch (e) {
          const issues = issuesOf(e);
          events.configRefused({ tenant: null, version: configVersion(next.state), reason: e instanceof CvlanError ? e.message : String(e), ...(issues ? { issues } : {}) });
          disposeDesiredState(next.state);
        }
      });
    });
  });
}
