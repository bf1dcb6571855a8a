/**
 * The flood generator: `node dist/bench/flood-generator.js --kind K --target HOST:PORT --rate N
 * --duration S [--threads T] [--public-key B64] [--source ADDR]`, run inside the attacker's namespace. piscina
 * spreads packet generation (BLAKE2s MACs, random fields) over T worker threads, each with its
 * own socket; prints one JSON line `{kind, sent, received, cookie_replies, seconds}`.
 */
import { benchArgs, usageExit } from './cli.js';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { FLOOD_KINDS, type FloodKind } from './flood-packets.js';
import type { FloodResult, FloodTask } from './flood-worker.js';

export interface FloodOptions {
  kind: FloodKind;
  host: string;
  port: number;
  /** Datagrams per second, all threads together. */
  rate: number;
  durationMs: number;
  threads: number;
  publicKey?: string;
  source?: string;
}

export async function runFlood(o: FloodOptions): Promise<FloodResult & { seconds: number }> {
  const pool = new Piscina({
    filename: fileURLToPath(new URL('./flood-worker.js', import.meta.url)),
    minThreads: o.threads,
    maxThreads: o.threads,
  });
  const started = Date.now();
  try {
    const task = (i: number): FloodTask => ({
      kind: o.kind,
      host: o.host,
      port: o.port,
      // Split the rate without losing the remainder.
      rate: Math.floor(o.rate / o.threads) + (i < o.rate % o.threads ? 1 : 0),
      durationMs: o.durationMs,
      ...(o.publicKey ? { publicKey: o.publicKey } : {}),
      ...(o.source ? { source: o.source } : {}),
    });
    const results = (await Promise.all(Array.from({ length: o.threads }, (_, i) => pool.run(task(i))))) as FloodResult[];
    return {
      sent: results.reduce((a, r) => a + r.sent, 0),
      received: results.reduce((a, r) => a + r.received, 0),
      cookieReplies: results.reduce((a, r) => a + r.cookieReplies, 0),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await pool.destroy();
  }
}

function fail(msg: string): never {
  usageExit('flood-generator', msg);
}

export function parseFloodArgs(argv: string[]): FloodOptions {
  const values = benchArgs(
    'flood-generator',
    `usage: node dist/bench/flood-generator.js --kind K --target HOST:PORT [options]   (inside the attacker's namespace)

  --kind K           one of ${FLOOD_KINDS.join(', ')}
  --target HOST:PORT where to (IPv6 as [addr]:port)
  --rate N           datagrams per second, all threads together (default 5000)
  --duration S       seconds (default 10)
  --threads T        worker threads (default 2)
  --public-key B64   the responder's WireGuard public key (wg-mac1)
  --source ADDR      source address
  -h, --help         this text`,
    {
      kind: { type: 'string' },
      target: { type: 'string' },
      rate: { type: 'string', default: '5000' },
      duration: { type: 'string', default: '10' },
      threads: { type: 'string', default: '2' },
      'public-key': { type: 'string' },
      source: { type: 'string' },
    },
    argv,
  );
  const kind = values.kind as FloodKind;
  if (!FLOOD_KINDS.includes(kind)) fail(`--kind: one of ${FLOOD_KINDS.join(', ')}`);
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(values.target ?? '');
  if (!m) fail('--target: HOST:PORT (IPv6 as [addr]:port)');
  const num = (v: string | undefined, name: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) fail(`--${name}: an integer ${min}..${max}`);
    return n;
  };
  const port = num(m[2], 'target port', 1, 65535);
  if (kind === 'wg-mac1' && !values['public-key']) fail('--public-key: needed for wg-mac1');
  return {
    kind,
    host: m[1]!,
    port,
    rate: num(values.rate, 'rate', 1, 1_000_000),
    durationMs: num(values.duration, 'duration', 1, 3600) * 1000,
    threads: num(values.threads, 'threads', 1, 64),
    ...(values['public-key'] ? { publicKey: values['public-key'] } : {}),
    ...(values.source ? { source: values.source } : {}),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const o = parseFloodArgs(process.argv.slice(2));
  const r = await runFlood(o);
  process.stdout.write(`${JSON.stringify({ kind: o.kind, sent: r.sent, received: r.received, cookie_replies: r.cookieReplies, seconds: r.seconds })}\n`);
}
