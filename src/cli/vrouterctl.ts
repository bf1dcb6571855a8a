#!/usr/bin/env node
/**
 * vrouterctl — reads the running cvlan-vrouter through its admin API (views, events), starts and
 * stops its IPsec tunnels by hand, runs its packet trace, and makes WireGuard keys. `vrouterctl --help` lists the
 * commands, `vrouterctl COMMAND --help` describes one; `--json` gives any read as JSON.
 *
 * Exit codes (stable, for scripts):
 *   0  success
 *   1  usage error or bad local input (unknown command/flag, missing --tenant, unreadable token
 *      file, invalid key on stdin)
 *   2  the daemon cannot be reached: socket missing, refused, not accessible, or TCP failure;
 *      one line on stderr names the socket/URL and the cause
 *   3  the API answered with an error (unknown tenant, unauthorized, ...)
 */

import type { RemoteAccessView } from '../remote-access/service.js';
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { adminGet, adminRequest, adminStream, type AdminTarget } from '../api/client.js';
import { DEFAULT_ADMIN_SOCKET } from '../api/server.js';
import type { BgpView, DropView, PeerView, RouteView, TunnelView, WorkerView } from '../api/state.js';
import type { TraceView } from '../api/trace.js';
import { CvlanError } from '../errors.js';
import { genkey, pubkey } from '../secrets/keys.js';

export const EXIT = { OK: 0, USAGE: 1, UNREACHABLE: 2, API: 3 } as const;

export interface CtlIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  stdin: AsyncIterable<Buffer | string>;
  env: Record<string, string | undefined>;
}

interface Command {
  /** Arguments after the command, for the usage line. */
  args?: string;
  summary: string;
  /** Options of this command besides the common ones. */
  options?: readonly ('tenant' | 'follow' | 'count' | 'filter')[];
  /** Positional arguments it takes (after the command). Default 0. */
  positionals?: number;
  /** Reads the daemon (GET); false for actions and local commands. */
  read?: boolean;
}

/** The commands; a new one joins with one entry (and its case below). */
const COMMANDS: Record<string, Command> = {
  stats: { summary: 'summary: tunnels, SAs, traffic, drops, workers', read: true },
  tunnels: { summary: 'IPsec tunnels and their state', read: true },
  sas: { summary: 'IKE and CHILD SAs in detail (algorithms, SPIs, counters, rekey)', read: true },
  peers: { summary: 'WireGuard peers, with the names the configuration gives them', read: true },
  routes: { args: '--tenant T', summary: 'routing table of tenant T', options: ['tenant'], read: true },
  drops: { summary: 'dropped packets by reason', read: true },
  workers: { summary: 'data-plane worker load', read: true },
  ha: { summary: 'active-passive: role, VRRP state, fencing, sync channel, synced sessions/SAs', read: true },
  clients: { summary: 'remote-access clients with their leased addresses, and pool usage', read: true },
  logs: { args: '[-f]', summary: 'recent events (tunnel up/down, auth failures, config); -f follows new ones', options: ['follow'], read: true },
  initiate: { args: 'TUNNEL', summary: 'bring IPsec tunnel TUNNEL up now (IKE_SA and CHILD_SA)', positionals: 1 },
  terminate: { args: 'TUNNEL', summary: "delete IPsec tunnel TUNNEL's SAs (it stays configured)", positionals: 1 },
  trace: {
    args: 'start|stop|clear|show',
    summary: 'packet trace in the data plane: start [--count N] [--filter K=V]..., stop, clear, show each packet\'s stages',
    options: ['count', 'filter'],
    positionals: 1,
  },
  genkey: { summary: 'print a new WireGuard private key (like wg genkey)' },
  pubkey: { summary: 'read a private key on stdin, print its public key (like wg pubkey)' },
};

const COMMON_OPTIONS = `options:
  --socket PATH         admin socket (default ${DEFAULT_ADMIN_SOCKET}, env CVLAN_ADMIN_SOCKET)
  --url URL             use TCP instead, e.g. http://10.0.0.1:9180 (needs --token-file)
  --token-file FILE     file holding the bearer token for --url (env CVLAN_ADMIN_TOKEN_FILE)
  --json                print the API's JSON instead of tables (logs: one event per line)
  -h, --help            this text (\`vrouterctl COMMAND --help\`: that command's)
`;

const USAGE = `usage: vrouterctl [options] <command>

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => {
    const head = `${name}${c.args ? ` ${c.args}` : ''}`;
    return head.length <= 20 ? `  ${head.padEnd(20)}  ${c.summary}` : `  ${head}\n  ${''.padEnd(20)}  ${c.summary}`;
  })
  .join('\n')}

${COMMON_OPTIONS}
exit codes: 0 ok, 1 usage, 2 daemon unreachable, 3 API error
`;

function commandHelp(name: string, c: Command): string {
  const extra = [
    ...(c.options?.includes('tenant') ? ['  --tenant T            the tenant whose table to print'] : []),
    ...(c.options?.includes('follow') ? ['  -f, --follow          keep printing events as they happen (until Ctrl-C)'] : []),
    ...(c.options?.includes('count') ? ['  --count N             start: packets to record, then stop (1..100000, default 50)'] : []),
    ...(c.options?.includes('filter')
      ? [
          '  --filter K=V          start: only packets with tenant=ID, peer=NAME|KEY (WireGuard),',
          '                        tunnel=ID (IPsec, by its SAs now) or prefix=CIDR (inner source or',
          '                        destination); repeat to require several',
        ]
      : []),
  ];
  return `usage: vrouterctl [options] ${name}${c.args ? ` ${c.args}` : ''}\n\n${c.summary}\n\n${COMMON_OPTIONS}${extra.length ? `${extra.join('\n')}\n` : ''}\nexit codes: 0 ok, 1 usage, 2 daemon unreachable, 3 API error\n`;
}

class UsageError extends Error {}

export async function main(argv: string[], io: CtlIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        socket: { type: 'string' },
        url: { type: 'string' },
        'token-file': { type: 'string' },
        tenant: { type: 'string' },
        follow: { type: 'boolean', short: 'f', default: false },
        count: { type: 'string' },
        filter: { type: 'string', multiple: true },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    io.stderr.write(`vrouterctl: ${(e as Error).message}\n${USAGE}`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  const [command, ...extra] = positionals;
  const spec = command !== undefined && Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (values.help) {
    io.stdout.write(spec ? commandHelp(command!, spec) : USAGE);
    return EXIT.OK;
  }
  try {
    if (command === undefined) throw new UsageError('no command given');
    if (!spec) throw new UsageError(`unknown command: ${command}`);
    if (extra.length > (spec.positionals ?? 0)) throw new UsageError(`unexpected argument: ${extra[spec.positionals ?? 0]}`);
    if (extra.length < (spec.positionals ?? 0)) throw new UsageError(`${command} needs ${spec.args}`);
    if (values.tenant !== undefined && !spec.options?.includes('tenant')) throw new UsageError(`--tenant is not an option of ${command}`);
    if (values.follow && !spec.options?.includes('follow')) throw new UsageError(`--follow is not an option of ${command}`);
    const traceQuery = command === 'trace' ? traceRequest(extra[0]!, values.count, values.filter) : undefined;
    if (!traceQuery && values.count !== undefined) throw new UsageError(`--count is not an option of ${command}`);
    if (!traceQuery && values.filter !== undefined) throw new UsageError(`--filter is not an option of ${command}`);
    if (command === 'genkey') {
      io.stdout.write(`${genkey()}\n`);
      return EXIT.OK;
    }
    if (command === 'pubkey') return await pubkeyCommand(io);
    if (command === 'routes' && !values.tenant) throw new UsageError('routes needs --tenant T');
    const target = resolveTarget(values, io.env);
    if (command === 'logs') return await logsCommand(target, values.follow, values.json, io);
    const res = traceQuery
      ? await adminRequest(target, traceQuery.method, traceQuery.path, 10_000)
      : command === 'initiate' || command === 'terminate'
        ? await adminRequest(target, 'POST', `/v1/tunnels/${encodeURIComponent(extra[0]!)}/${command}`, 30_000)
        : await adminGet(target, command === 'routes' ? `/v1/routes?tenant=${encodeURIComponent(values.tenant!)}` : apiPath(command));
    let body: unknown;
    try {
      body = JSON.parse(res.body);
    } catch {
      io.stderr.write(`vrouterctl: the admin API returned non-JSON (HTTP ${res.status})\n`);
      return EXIT.API;
    }
    if (res.status < 200 || res.status > 299) {
      const err = (body as { error?: { code?: string; message?: string } }).error;
      io.stderr.write(`vrouterctl: ${err?.code ?? 'error'}: ${err?.message ?? 'request failed'} (HTTP ${res.status})\n`);
      return EXIT.API;
    }
    io.stdout.write(values.json ? `${JSON.stringify(body, null, 2)}\n` : render(traceQuery ? traceQuery.render : command, body));
    return EXIT.OK;
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`vrouterctl: ${e.message}\n${spec ? commandHelp(command!, spec) : USAGE}`);
      return EXIT.USAGE;
    }
    if (e instanceof CvlanError && e.code === 'CVLAN_ERR_DAEMON_UNREACHABLE') {
      io.stderr.write(`vrouterctl: ${e.message}\n`);
      return EXIT.UNREACHABLE;
    }
    if (e instanceof CvlanError && (e.code === 'CVLAN_ERR_KEY' || e.code === 'CVLAN_ERR_API_OPTIONS')) {
      io.stderr.write(`vrouterctl: ${e.message}\n`);
      return EXIT.USAGE;
    }
    throw e;
  }
}

/**
 * `logs [-f]`: the daemon's recent events, then (with -f) new ones as they happen until the
 * stream ends or the process is interrupted.
 */
async function logsCommand(target: AdminTarget, follow: boolean, json: boolean, io: CtlIo): Promise<number> {
  const abort = new AbortController();
  const interrupted = (): void => abort.abort();
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const r = await adminStream(target, `/v1/events${follow ? '?follow=true' : ''}`, (line) => io.stdout.write(json ? `${line}\n` : renderEvent(line)), abort.signal);
    if (r.error !== undefined) {
      let err: { code?: string; message?: string } | undefined;
      try {
        err = (JSON.parse(r.error) as { error?: typeof err }).error;
      } catch {
        err = undefined;
      }
      io.stderr.write(`vrouterctl: ${err?.code ?? 'error'}: ${err?.message ?? 'request failed'} (HTTP ${r.status})\n`);
      return EXIT.API;
    }
    return EXIT.OK;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

/** One event line for people: time, level, event, tenant/tunnel, then the other fields. */
export function renderEvent(line: string): string {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${line}\n`;
  }
  const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
  const { time, level, event, tenant, tunnel, msg, pid: _pid, hostname: _host, name: _name, ...rest } = e;
  const scope = [tenant, tunnel].filter((x) => typeof x === 'string' && x.length > 0).join('/');
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${[String(time ?? ''), (LEVELS[level as number] ?? String(level)).padEnd(5), String(event), scope || '-', String(msg ?? '')].join('  ')}${fields ? `  ${fields}` : ''}\n`;
}

const TRACE_FILTER_KEYS = ['tenant', 'peer', 'tunnel', 'prefix'] as const;

/** `trace SUB`: the request it makes and how its answer prints; refuses bad flags by name. */
export function traceRequest(
  sub: string,
  count: string | undefined,
  filters: string[] | undefined,
): { method: 'GET' | 'POST'; path: string; render: 'trace-show' | 'trace-status' } {
  if (!['start', 'stop', 'clear', 'show'].includes(sub)) throw new UsageError(`trace: unknown subcommand ${sub} (start, stop, clear or show)`);
  if (sub !== 'start' && count !== undefined) throw new UsageError('--count is an option of trace start only');
  if (sub !== 'start' && filters !== undefined) throw new UsageError('--filter is an option of trace start only');
  if (sub === 'show') return { method: 'GET', path: '/v1/trace', render: 'trace-show' };
  if (sub !== 'start') return { method: 'POST', path: `/v1/trace/${sub}`, render: 'trace-status' };
  const q = new URLSearchParams();
  if (count !== undefined) {
    const n = /^[0-9]+$/.test(count) ? Number(count) : NaN;
    if (!Number.isSafeInteger(n) || n < 1 || n > 100_000) throw new UsageError(`--count: ${JSON.stringify(count)} is not a whole number 1..100000`);
    q.set('count', String(n));
  }
  for (const f of filters ?? []) {
    const eq = f.indexOf('=');
    const key = eq > 0 ? f.slice(0, eq) : '';
    const value = eq > 0 ? f.slice(eq + 1) : '';
    if (!(TRACE_FILTER_KEYS as readonly string[]).includes(key)) {
      throw new UsageError(`--filter: ${JSON.stringify(f)} is not K=V with K one of ${TRACE_FILTER_KEYS.join(', ')}`);
    }
    if (value.length === 0) throw new UsageError(`--filter: ${key} needs a value`);
    if (q.has(key)) throw new UsageError(`--filter: ${key} given twice`);
    q.set(key, value);
  }
  const qs = q.toString();
  return { method: 'POST', path: `/v1/trace/start${qs ? `?${qs}` : ''}`, render: 'trace-status' };
}

function traceStatusText(s: TraceView['status']): string {
  const filter = Object.entries(s.filter)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `trace ${s.on ? 'on' : 'off'}: ${s.count - s.remaining}/${s.count} packets recorded, filter ${filter || 'none'}, ${s.lost} records lost\n`;
}

function apiPath(command: string): string {
  return command === 'sas' ? '/v1/tunnels' : `/v1/${command}`;
}

function resolveTarget(
  values: { socket?: string | undefined; url?: string | undefined; 'token-file'?: string | undefined },
  env: Record<string, string | undefined>,
): AdminTarget {
  if (values.url !== undefined) {
    if (values.socket !== undefined) throw new UsageError('give either --socket or --url, not both');
    let url: URL;
    try {
      url = new URL(values.url);
    } catch {
      throw new UsageError(`--url is not a URL: ${values.url}`);
    }
    if (url.protocol !== 'http:') throw new UsageError('--url must be http://host:port');
    const tokenFile = values['token-file'] ?? env.CVLAN_ADMIN_TOKEN_FILE;
    if (!tokenFile) throw new UsageError('--url needs --token-file FILE');
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`cannot read token file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (token.length === 0 || /\s/.test(token)) throw new UsageError(`token file ${tokenFile} does not hold one token`);
    return { kind: 'tcp', url, token };
  }
  return { kind: 'unix', socketPath: values.socket ?? env.CVLAN_ADMIN_SOCKET ?? DEFAULT_ADMIN_SOCKET };
}

async function pubkeyCommand(io: CtlIo): Promise<number> {
  let text = '';
  for await (const chunk of io.stdin) {
    text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    if (text.length > 4096) break; // a key is 44 characters; refuse to buffer a stream
  }
  io.stdout.write(`${pubkey(text)}\n`);
  return EXIT.OK;
}

// ---- human output -------------------------------------------------------------------------

/** A tenant's BGP speaker: announced prefixes, then one row per neighbour. */
function bgpText(bgp: BgpView): string {
  const head = `BGP${bgp.running ? '' : ' (speaker not running)'}: announcing ${bgp.announced.length > 0 ? bgp.announced.join(', ') : 'nothing'}`;
  return `${head}\n${table(
    ['NEIGHBOR', 'ADDRESS', 'STATE', 'ANNOUNCED', 'LEARNED', 'REFUSED', 'INFO'],
    bgp.neighbors.map((n) => [
      n.name,
      n.address,
      n.state,
      String(n.announced),
      n.learned.length > 0 ? n.learned.join(',') : '-',
      `${n.limited} limit, ${n.filtered} filter${n.import_limit_hit ? ' (limit hit)' : ''}`,
      n.info || '-',
    ]),
  )}`;
}

function table(header: string[], rows: string[][]): string {
  if (rows.length === 0) return '(none)\n';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function ago(iso: string | null, now = Date.now()): string {
  if (iso === null) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return `${Math.max(0, Math.round((now - t) / 1000))}s ago`;
}

const secs = (s: number | null) => (s === null ? '-' : `${s}s`);

function render(command: string, body: unknown): string {
  switch (command) {
    case 'ha': {
      const h = (body as { ha: Record<string, unknown> | null }).ha;
      if (!h) return 'HA is not configured on this node (no [ha] in the local TOML)\n';
      const age = h.last_sync_age_ms === null ? '-' : `${String(h.last_sync_age_ms)} ms`;
      const rows: Array<[string, unknown]> = [
        ['role', `${String(h.role)}${h.role === 'standby' ? ' (passive: sends nothing)' : ''} since ${String(h.role_since)}`],
        ['vrrp', `${String(h.vrrp_state)} priority ${String(h.priority)}${h.preempt ? ' preempt' : ''}`],
        ['fenced', h.fenced ? `yes (${String(h.fence_reason)})` : 'no'],
        ['vips', (h.vips as string[]).join(', ')],
        ['peer', `${String(h.peer)} ${h.peer_connected ? 'connected' : 'not connected'}${h.peer_role ? `, ${String(h.peer_role)}` : ''}`],
        ['generation', `${String(h.generation)} (peer ${h.peer_generation === null ? '-' : String(h.peer_generation)})`],
        ['sync', h.sync_channel ? `last frame ${age} ago; ${String(h.sync_frames_sent)} sent, ${String(h.sync_frames_received)} received` : 'not wired (VRRP and fencing only)'],
        ['synced', `${String(h.synced_wireguard_sessions)} WireGuard sessions, ${String(h.synced_esp_sas)} ESP SAs`],
        ['rejected', `${String(h.sync_rejected_forged)} forged, ${String(h.sync_rejected_replayed)} replayed`],
        ['leases', `${String(h.lease_exhausted)} exhausted`],
        ['takeovers', `${String(h.takeovers)} (refused for a generation mismatch: ${String(h.generation_refusals)})`],
        ['keepalived', `pid ${h.keepalived_pid === null ? '-' : String(h.keepalived_pid)}, ${String(h.keepalived_starts)} starts`],
        ['charon ha', h.charon_ha ? 'on (relayed over the sync channel)' : 'off'],
      ];
      return rows.map(([k, v]) => `${k.padEnd(10)}  ${String(v)}`).join('\n') + '\n';
    }
    case 'stats': {
      const s = body as Record<string, unknown>;
      const byteKeys = new Set(['bytes_in', 'bytes_out']);
      const w = Math.max(...Object.keys(s).map((k) => k.length));
      return (
        Object.entries(s)
          .map(([k, v]) => `${k.padEnd(w)}  ${byteKeys.has(k) && typeof v === 'number' ? humanBytes(v) : String(v)}`)
          .join('\n') + '\n'
      );
    }
    case 'tunnels': {
      const { tunnels } = body as { tunnels: TunnelView[] };
      return table(
        ['ID', 'TENANT', 'REMOTE_ID', 'AUTH', 'STATE', 'IKE_SA', 'CHILD_SAS'],
        tunnels.map((t) => [t.id, t.tenant, t.remote_id, t.auth_method, t.state, t.ike_sa?.state ?? '-', String(t.child_sas.length)]),
      );
    }
    case 'sas': {
      const { tunnels } = body as { tunnels: TunnelView[] };
      if (tunnels.length === 0) return '(none)\n';
      const out: string[] = [];
      for (const t of tunnels) {
        out.push(`${t.id} (tenant ${t.tenant}): ${t.state}, remote ${t.remote_id}, auth ${t.auth_method}`);
        const ike = t.ike_sa;
        if (ike === null) {
          out.push('  IKE_SA: none');
        } else {
          const a = ike.algorithms;
          out.push(
            `  IKE_SA: ${ike.state}, established ${ago(ike.established_at)}, rekey in ${secs(ike.rekey_in_s)}`,
            `    ${[a.encryption, a.integrity, a.prf, a.dh_group].filter((x) => x !== null).join('/')}`,
          );
        }
        for (const c of t.child_sas) {
          const a = c.algorithms;
          out.push(
            `  CHILD_SA ${c.name}: SPIs ${c.spi_in}_i ${c.spi_out}_o, rekey in ${secs(c.rekey_in_s)}`,
            `    ${[a.encryption, a.integrity].filter((x) => x !== null).join('/')}${a.esn ? '/ESN' : ''}, ${c.udp_encap ? 'ESP-in-UDP' : 'ESP'}`,
            `    in  ${humanBytes(c.bytes_in)}, ${c.packets_in} packets`,
            `    out ${humanBytes(c.bytes_out)}, ${c.packets_out} packets`,
            `    local  ${c.local_ts.join(' ')}`,
            `    remote ${c.remote_ts.join(' ')}`,
          );
        }
      }
      return out.join('\n') + '\n';
    }
    case 'peers': {
      const { peers } = body as { peers: PeerView[] };
      return table(
        ['NAME', 'PUBLIC_KEY', 'TENANT', 'ENDPOINT', 'ALLOWED_IPS', 'HANDSHAKE', 'RX', 'TX'],
        peers.map((p) => [
          p.name ?? '-',
          p.public_key,
          p.tenant,
          p.endpoint ?? '-',
          p.allowed_ips.join(','),
          ago(p.latest_handshake),
          humanBytes(p.rx_bytes),
          humanBytes(p.tx_bytes),
        ]),
      );
    }
    case 'routes': {
      const { routes, bgp } = body as { routes: RouteView[]; bgp?: BgpView | null };
      const out = table(['PREFIX', 'VIA', 'ID'], routes.map((r) => [r.prefix, r.via.kind, r.via.id]));
      return bgp ? `${out}\n\n${bgpText(bgp)}` : out;
    }
    case 'clients': {
      const { clients, pools } = body as RemoteAccessView;
      const c = table(
        ['TENANT', 'USER', 'DEVICE', 'REMOTE', 'ADDRESSES', 'UP'],
        clients.map((x) => [x.tenant, x.user ?? '-', x.device ?? '-', x.remote, x.addresses.join(',') || '-', secs(x.established)]),
      );
      const p = table(['TENANT', 'POOL', 'RANGE', 'IN_USE', 'KEPT', 'SIZE'], pools.map((x) => [x.tenant, x.pool, x.range, String(x.online), String(x.offline), String(x.size)]));
      return `${c}\n${p}`;
    }
    case 'drops': {
      const { drops } = body as { drops: DropView[] };
      return table(
        ['REASON', 'WORKER', 'TENANT', 'COUNT'],
        drops.map((d) => [d.reason, d.worker === null ? '-' : String(d.worker), d.tenant ?? '-', String(d.count)]),
      );
    }
    case 'workers': {
      const { workers } = body as { workers: WorkerView[] };
      return table(
        ['WORKER', 'RX_PKTS', 'TX_PKTS', 'RX', 'TX', 'BATCHES', 'RESTARTS', 'TRANSLATED', 'BUSY'],
        workers.map((w) => [
          String(w.index),
          String(w.rx_packets),
          String(w.tx_packets),
          humanBytes(w.rx_bytes),
          humanBytes(w.tx_bytes),
          String(w.batches),
          String(w.restarts),
          String(w.translated),
          w.busy_ratio === null ? '-' : `${(w.busy_ratio * 100).toFixed(0)}%`,
        ]),
      );
    }
    case 'trace-status':
      return traceStatusText(body as TraceView['status']);
    case 'trace-show': {
      const t = body as TraceView;
      const out = [traceStatusText(t.status).trimEnd()];
      for (const [i, p] of t.packets.entries()) {
        out.push('', `packet ${i + 1} (${p.id}) at ${(p.at_ns / 1e9).toFixed(6)}s`);
        for (const s of p.stages) out.push(`  ${s.stage.padEnd(10)}  ${s.detail}`);
      }
      return `${out.join('\n')}\n`;
    }
    case 'initiate':
    case 'terminate': {
      const r = body as { tunnel: string; action: string };
      return `tunnel ${r.tunnel}: ${r.action === 'initiate' ? 'initiated (established)' : 'terminated'}\n`;
    }
    default:
      return `${JSON.stringify(body)}\n`;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`vrouterctl: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
