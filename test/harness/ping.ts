/** ping with a loss count, and iperf3 servers/clients with their JSON results parsed. */
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { LabError } from './errors.js';
import { run } from './exec.js';
import { tools } from './tools.js';

export interface PingOptions {
  /** Echo requests to send. Default 3. */
  count?: number;
  /** Interval between requests, seconds (below 0.2 needs root). Default 0.2 s. */
  interval?: number;
  /** The same in milliseconds; wins over `interval` when both are given. */
  intervalMs?: number;
  /** Seconds to wait for the last reply. Default 2 s. */
  wait?: number;
  /** Alias of `wait`, seconds. */
  timeoutSec?: number;
  /** Source address or interface (`-I`). */
  source?: string;
  /** Payload bytes (`-s`). Default ping's 56. */
  size?: number;
  /** Set DF and never fragment locally (`-M do`): path MTU discovery. Default false. */
  dontFragment?: boolean;
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** Lost share, 0–1. */
  loss: number;
  /** Average round trip in ms, undefined when nothing came back. */
  avgRttMs: number | undefined;
  output: string;
}

/** Pings `dest` from `ns`; never throws on loss (check `received`). */
export async function ping(ns: string | undefined, dest: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const interval = opts.intervalMs !== undefined ? opts.intervalMs / 1000 : (opts.interval ?? 0.2);
  const wait = opts.wait ?? opts.timeoutSec ?? 2;
  const args = ['-n', '-q', '-c', String(count), '-i', String(interval), '-W', String(wait)];
  if (opts.source !== undefined) args.push('-I', opts.source);
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  if (opts.dontFragment) args.push('-M', 'do');
  if (dest.includes(':')) args.unshift('-6');
  args.push(dest);
  const r = await run(tools.ping, args, {
    ns,
    allowFailure: true,
    timeoutMs: (count * interval + wait + 10) * 1000,
  });
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  if (m === null) throw new LabError('CVLAN_LAB_PARSE', `ping ${dest}: ${r.stderr.trim() || r.stdout.trim()}`);
  const transmitted = Number(m[1]);
  const received = Number(m[2]);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return {
    transmitted,
    received,
    loss: transmitted === 0 ? 1 : 1 - received / transmitted,
    avgRttMs: rtt !== null ? Number(rtt[1]) : undefined,
    output: r.stdout,
  };
}

/** Pings until one reply comes back or `timeoutMs` passes (tunnels need a handshake first). */
export async function waitForPing(ns: string | undefined, dest: string, timeoutMs = 10_000, source?: string): Promise<PingResult> {
  const deadline = Date.now() + timeoutMs;
  let last: PingResult;
  do {
    last = await ping(ns, dest, { count: 1, wait: 1, ...(source !== undefined ? { source } : {}) });
    if (last.received > 0) return last;
  } while (Date.now() < deadline);
  throw new LabError('CVLAN_LAB_TIMEOUT', `no ping reply from ${dest} in ${ns ?? 'host'} within ${timeoutMs} ms\n${last.output}`);
}

export interface IperfServer {
  process: LabProcess;
  port: number;
  bind: string | undefined;
}

/** Starts `iperf3 -s` in `ns` (port default 5201) and waits until it listens. */
export async function iperfServer(lab: Lab, ns: string, opts: { port?: number; bind?: string } = {}): Promise<IperfServer> {
  const port = opts.port ?? 5201;
  // --forceflush: iperf3 block-buffers a piped stdout, so the ready line would never arrive
  const args = ['-s', '-p', String(port), '--forceflush'];
  if (opts.bind !== undefined) args.push('-B', opts.bind);
  const p = lab.spawn(`iperf3-server@${ns}`, tools.iperf3, args, { ns });
  await p.waitReady({ line: 'Server listening', timeoutMs: 5000 });
  return { process: p, port, bind: opts.bind };
}

export interface IperfOptions {
  /** Seconds of traffic. Default 3 s. */
  duration?: number;
  /** Parallel TCP streams (`-P`). Default 1. */
  streams?: number;
  /** Seconds at the start left out of the result (`-O`, TCP slow start). Default 0. */
  omit?: number;
  /** Server port. Default 5201. */
  port?: number;
  /** Reverse direction (`-R`: server sends). Default false. */
  reverse?: boolean;
  /** UDP at this target rate in bit/s instead of TCP. */
  udpBitrate?: number;
  /** UDP datagram payload, bytes (`-l`); keep it under the tunnel's MTU. Default iperf3's. */
  udpLength?: number;
  /** Socket buffer, bytes (`-w`; iperf3 uses it on the server too): a UDP receiver descheduled on a busy machine then loses nothing. */
  window?: number;
  /** TCP congestion control of the sender (`-C`), e.g. `cubic`; default the namespace's. */
  congestion?: string;
}

export interface IperfResult {
  /** Receiver-side goodput, bit/s. */
  bitsPerSecond: number;
  /** Sender-side rate, bit/s. */
  sentBitsPerSecond: number;
  /** Bytes the receiver got. */
  bytes: number;
  /** TCP retransmits of the sender (0 for UDP). */
  retransmits: number;
  /** UDP lost share (0 for TCP). */
  lostPercent: number;
  streams: number;
  seconds: number;
  /** The full `-J` document, for whoever wants more. */
  json: unknown;
}

/** Runs an iperf3 client in `ns` against `server` and parses its JSON report. */
export async function iperfClient(ns: string, server: string, opts: IperfOptions = {}): Promise<IperfResult> {
  const duration = opts.duration ?? 3;
  const streams = opts.streams ?? 1;
  const args = ['-c', server, '-p', String(opts.port ?? 5201), '-t', String(duration), '-P', String(streams), '-J'];
  if ((opts.omit ?? 0) > 0) args.push('-O', String(opts.omit));
  if (opts.reverse) args.push('-R');
  if (opts.udpBitrate !== undefined) args.push('-u', '-b', String(opts.udpBitrate));
  if (opts.udpLength !== undefined) args.push('-l', String(opts.udpLength));
  if (opts.window !== undefined) args.push('-w', String(opts.window));
  if (opts.congestion !== undefined) args.push('-C', opts.congestion);
  const r = await run(tools.iperf3, args, { ns, allowFailure: true, timeoutMs: (duration + (opts.omit ?? 0) + 20) * 1000 });
  let json: {
    error?: string;
    end?: {
      sum_sent?: { bits_per_second?: number; retransmits?: number; bytes?: number };
      sum_received?: { bits_per_second?: number; bytes?: number };
      sum?: { bits_per_second?: number; bytes?: number; lost_percent?: number };
    };
  };
  try {
    json = JSON.parse(r.stdout) as typeof json;
  } catch (err) {
    throw new LabError('CVLAN_LAB_PARSE', `iperf3 -c ${server}: no JSON (exit ${String(r.code)}): ${r.stderr.trim()}`, {
      cause: err,
    });
  }
  if (json.error !== undefined || r.code !== 0) {
    throw new LabError('CVLAN_LAB_COMMAND', `iperf3 -c ${server} failed: ${json.error ?? r.stderr.trim()}`);
  }
  const end = json.end ?? {};
  const udp = opts.udpBitrate !== undefined;
  const received = udp ? end.sum : end.sum_received;
  const sent = udp ? end.sum : end.sum_sent;
  if (received?.bits_per_second === undefined) {
    throw new LabError('CVLAN_LAB_PARSE', `iperf3 -c ${server}: no receiver summary in its JSON`);
  }
  return {
    bitsPerSecond: received.bits_per_second,
    sentBitsPerSecond: sent?.bits_per_second ?? received.bits_per_second,
    bytes: received.bytes ?? 0,
    retransmits: end.sum_sent?.retransmits ?? 0,
    lostPercent: end.sum?.lost_percent ?? 0,
    streams,
    seconds: duration,
    json,
  };
}
