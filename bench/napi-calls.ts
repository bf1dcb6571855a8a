/**
 * Cost of crossing the Node-API boundary, the thing the design keeps off the packet path: a cheap
 * call (`nativeInfo()`), a buffer round trip, and a device's per-worker counters (`stats()`), each
 * next to a plain JavaScript call for scale. Needs the native addon; without it this prints why
 * and exits 0. Opening a device needs root (it creates a TUN device, removed on close).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/napi-calls.js [--max-time 1]
 */
import Benchmark from 'benchmark';
import { benchArgs } from './cli.js';
import { randomSuffix } from '../test/harness/names.js';

interface DeviceLike {
  stats(): unknown[];
  close(): void;
}

interface DataplaneModule {
  nativeInfo(): unknown;
  echoBuffer?: (b: Buffer) => Buffer;
  PlainDevice?: {
    open(o: { tunName: string; listenPort: number; listenAddress?: string; workers?: number; peers: unknown[] }): DeviceLike;
  };
}

async function main(): Promise<void> {
  const values = benchArgs(
    'napi-calls',
    `usage: node dist/bench/napi-calls.js [--max-time 1]

  --max-time S   seconds per case (default 1)
  -h, --help     this text`,
    { 'max-time': { type: 'string', default: '1' } },
  );
  const maxTime = Number(values['max-time']);

  // A variable specifier keeps the compiler from requiring the module to exist at build time.
  const spec = '../src/dataplane/index.js';
  let dp: DataplaneModule;
  try {
    dp = (await import(spec)) as DataplaneModule;
    dp.nativeInfo();
  } catch (err) {
    process.stdout.write(`napi-calls: skipped, the data-plane module or native addon is not built (${err instanceof Error ? err.message : String(err)})\n`);
    return;
  }

  let device: DeviceLike | undefined;
  let deviceNote = '';
  if (dp.PlainDevice === undefined) deviceNote = 'no PlainDevice export';
  else if (process.getuid?.() !== 0) deviceNote = 'opening a device needs root';
  else {
    try {
      device = dp.PlainDevice.open({ tunName: `cvb${randomSuffix(6)}`, listenPort: 0, listenAddress: '127.0.0.1', workers: 2, peers: [] });
    } catch (err) {
      deviceNote = `opening a device failed: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  const close = (): void => {
    device?.close();
    device = undefined;
  };
  process.once('exit', close);

  try {
    const suite = new Benchmark.Suite('napi-calls');
    const opts = { maxTime };
    let sink: unknown;
    const jsInfo = (): { version: string } => ({ version: 'x' });
    suite.add('js: plain function returning an object (reference)', () => void (sink = jsInfo()), opts);
    suite.add('napi: nativeInfo()', () => void (sink = dp.nativeInfo()), opts);
    if (dp.echoBuffer !== undefined) {
      const echo = dp.echoBuffer;
      const buf = Buffer.alloc(1420);
      suite.add('napi: echoBuffer(1420 B)', () => void (sink = echo(buf)), opts);
    }
    if (device !== undefined) {
      const d = device;
      suite.add('napi: Device#stats() (2 workers)', () => void (sink = d.stats()), opts);
    }
    suite.on('cycle', (ev: Benchmark.Event) => {
      const b = ev.target;
      const ns = 1e9 / (b.hz ?? 1);
      process.stdout.write(`${String(b.name).padEnd(55)} ${(b.hz ?? 0).toFixed(0).padStart(12)} ops/s  ${ns.toFixed(1).padStart(9)} ns/call  ±${(b.stats?.rme ?? 0).toFixed(1)} %\n`);
    });
    suite.run({ async: false });
    void sink;
    if (deviceNote !== '') process.stdout.write(`Device#stats() skipped: ${deviceNote}\n`);
  } finally {
    close();
  }
}

await main();
