/**
 * What charon says, turned into the vrouter's events: its VICI events (`ike-updown`, rekeys)
 * become `tunnel_up` / `tunnel_down` and rekey counts, its log lines become `auth_failure`, its
 * restarts `charon_restart`. An EAP login as another user than the tunnel's is torn down here.
 * The parsing (`authFailure`, `eapLoginRefusal`) is pure; `CharonWatch` wires it to a service.
 */
import type { Logger } from 'pino';
import type { IpsecTunnelSpec } from '../config/model.js';
import type { IpsecService } from '../ipsec/service.js';
import type { EventLog } from '../log.js';
import type { ViciSection } from '../strongswan/vici/encoding.js';

/**
 * charon's level-1 lines that mean "the peer failed to authenticate (or we failed to)". The IKE_SA
 * name comes from the `<conn|n>` prefix; identities in quotes are identities, never secrets.
 */
const AUTH_FAILURE_PATTERNS: [RegExp, string][] = [
  [/tried \d+ shared keys? for '([^']*)' - '([^']*)', but MAC mismatched/, 'PSK mismatch'],
  [/received AUTHENTICATION_FAILED notify/, 'the peer refused our authentication'],
  // the server's wording, then the client's
  [/EAP method \S+ failed|EAP_\S+ method failed/, 'EAP failed'],
  [/EAP-MS-CHAPv2 verification failed/, 'EAP-MSCHAPv2 password mismatch'],
  // the cvlan plugin's line for a late AUTHENTICATION_FAILED (native/strongswan/cvlan_alerts.c)
  [/received a late AUTHENTICATION_FAILED: the peer refused our authentication/, 'the peer refused our authentication'],
  [/no trusted (?:\S+ )?public key found for '([^']*)'/, 'no trusted public key for the peer'],
  [/constraint check failed/, 'certificate constraints not met'],
  [/no shared key found for '([^']*)'/, 'no PSK configured for the identities'],
];

export function authFailure(line: string): { conn?: string; remote?: string; reason: string } | undefined {
  for (const [re, reason] of AUTH_FAILURE_PATTERNS) {
    const m = re.exec(line);
    if (!m) continue;
    const conn = /<([^|>]+)\|\d+>/.exec(line)?.[1];
    const remote = m[2] ?? m[1];
    return { ...(conn ? { conn } : {}), ...(remote && !reason.startsWith('EAP') && !reason.startsWith('the peer') ? { remote } : {}), reason };
  }
  return undefined;
}

/** The fields of an `ike-updown` IKE_SA section the watch reads. */
export interface UpdownSa {
  state?: string;
  'remote-host'?: string;
  'remote-id'?: string;
  'remote-eap-id'?: string;
  uniqueid?: string;
}

/**
 * Why an IKE_SA that came up must be torn down, or undefined when it may stay. An EAP server asks
 * the client for its identity (`eap_id = %any`: charon skips EAP-Identity when a fixed one is
 * configured, and clients then log in with their IKE identity), so any user whose password charon
 * holds could authenticate; the login is held to the tunnel's configured user.
 */
export function eapLoginRefusal(auth: IpsecTunnelSpec['auth'] | undefined, sa: UpdownSa): string | undefined {
  if (auth?.method !== 'eap' || auth.role !== 'server') return undefined;
  // charon's VICI leaves `remote-eap-id` out when it equals the IKE identity (the common client
  // default: log in as yourself); the login is then the IKE identity.
  const got = sa['remote-eap-id'] ?? sa['remote-id'];
  if (got === auth.eapIdentity) return undefined;
  return `EAP identity ${JSON.stringify(got ?? null)} is not the tunnel's user`;
}

export interface CharonWatchHooks {
  events: EventLog;
  logger: Logger;
  /** Whether `conn` is a remote-access connection: its clients are logged by ../remote-access/service.ts. */
  client?(conn: string): boolean;
  /** The tenant of configured tunnel `conn` and its authentication, undefined for an unknown name. */
  tunnel(conn: string): { tenant: string; auth: IpsecTunnelSpec['auth'] } | undefined;
  /** charon reported a change of an SA (`ike-updown`, `child-updown`, rekeys): the owner's IKE view applies it. */
  changed(name: string, msg: ViciSection): void;
}

/** Subscribes to a service's charon and reports what it says; counts rekeys. */
export class CharonWatch {
  ikeRekeys = 0;
  childRekeys = 0;
  readonly #ipsec: IpsecService;
  readonly #hooks: CharonWatchHooks;

  private constructor(ipsec: IpsecService, hooks: CharonWatchHooks) {
    this.#ipsec = ipsec;
    this.#hooks = hooks;
  }

  static async start(ipsec: IpsecService, hooks: CharonWatchHooks): Promise<CharonWatch> {
    const w = new CharonWatch(ipsec, hooks);
    await w.#subscribe();
    return w;
  }

  async #subscribe(): Promise<void> {
    const { vici, supervisor } = this.#ipsec;
    const { events } = this.#hooks;
    const tenantOf = (conn: string | undefined): string | null => (conn ? (this.#hooks.tunnel(conn)?.tenant ?? null) : null);
    let lastExit: { code: number | null; signal: string | null } = { code: null, signal: null };
    supervisor.on('exited', (e) => (lastExit = { code: e.code, signal: e.signal }));
    supervisor.on('restarting', (r) => events.charonRestart({ attempt: r.attempt, backoff_ms: r.delayMs, exit_code: lastExit.code, signal: lastExit.signal }));
    supervisor.on('line', (line) => {
      const failure = authFailure(line);
      if (failure?.conn && this.#hooks.client?.(failure.conn)) return;
      if (failure) events.authFailure({ tenant: tenantOf(failure.conn), tunnel: failure.conn ?? null, remote: failure.remote ?? 'unknown', method: 'ike', reason: failure.reason });
    });
    vici.on('event', (name, msg) => {
      for (const [conn, v] of Object.entries(msg)) {
        if (typeof v !== 'object' || v === null) continue;
        const sa = v as UpdownSa;
        if (this.#hooks.client?.(conn)) continue;
        const tenant = tenantOf(conn) ?? 'unknown';
        if (name === 'ike-updown') {
          if (msg.up === 'yes') {
            if (this.#refuse(conn, sa)) continue;
            events.tunnelUp({ tenant, tunnel: conn, type: 'ipsec', ...(sa['remote-host'] ? { remote: sa['remote-host'] } : {}) });
          } else events.tunnelDown({ tenant, tunnel: conn, type: 'ipsec', reason: `IKE_SA ${sa.state ?? 'down'}` });
        } else if (name === 'ike-rekey') {
          this.ikeRekeys++;
        } else if (name === 'child-rekey') {
          this.childRekeys++;
        }
      }
      this.#hooks.changed(name, msg);
    });
    for (const ev of ['ike-updown', 'child-updown', 'ike-rekey', 'child-rekey']) await vici.subscribe(ev);
  }

  /** Tears down an IKE_SA whose EAP login is not the tunnel's user, logged as an authentication failure. */
  #refuse(conn: string, sa: UpdownSa): boolean {
    const t = this.#hooks.tunnel(conn);
    const reason = eapLoginRefusal(t?.auth, sa);
    if (!t || reason === undefined) return false;
    this.#hooks.events.authFailure({ tenant: t.tenant, tunnel: conn, remote: sa['remote-host'] ?? 'unknown', method: 'ike', reason });
    void this.#ipsec.vici
      .terminate({ ...(sa.uniqueid ? { ikeId: Number(sa.uniqueid) } : { ike: conn }), force: true, timeoutMs: -1 })
      .catch((e: unknown) => this.#hooks.logger.warn({ tunnel: conn, err: (e as Error).message }, 'terminating an IKE_SA with the wrong EAP identity'));
    return true;
  }
}
