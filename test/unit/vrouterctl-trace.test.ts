// `vrouterctl trace` against a real admin API server whose trace control records what it is
// asked (the data plane's own trace is covered by test/net/trace.test.ts and its Rust tests).

import { join } from 'node:path';
import t from 'tap';
import { startAdminServer } from '../../src/api/server.js';
import { CvlanError } from '../../src/errors.js';
import { SnapshotStateSource } from '../../src/api/state.js';
import type { TraceControl } from '../../src/api/trace.js';
import type { TracePacket, TraceStartOptions } from '../../src/dataplane/trace.js';
import { main, EXIT, type CtlIo } from '../../src/cli/vrouterctl.js';
import { sampleSnapshot, tempSocketDir } from './api-fixture.js';

async function run(argv: string[]) {
  let out = '';
  let err = '';
  const io: CtlIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    stdin: (async function* () {})(),
    env: {},
  };
  const code = await main(argv, io);
  return { code, out, err };
}

/** A trace that keeps what it is told; `packets` is what a read returns. */
class RecordingTrace implements TraceControl {
  calls: string[] = [];
  started: TraceStartOptions[] = [];
  on = false;
  count = 0;
  packets: TracePacket[] = [];
  start(opts: TraceStartOptions): void {
    if (opts.prefix !== undefined && !opts.prefix.includes('/')) {
      // As the data plane's wrapper throws it (`fromNative`).
      throw new CvlanError('CVLAN_ERR_INVALID_ARG', 'prefix: not a prefix');
    }
    this.calls.push('start');
    this.started.push(opts);
    this.on = true;
    this.count = opts.count ?? 50;
  }
  stop(): void {
    this.calls.push('stop');
    this.on = false;
  }
  clear(): void {
    this.calls.push('clear');
  }
  status() {
    return { on: this.on, count: this.count, remaining: this.count - this.packets.length, lost: 0 };
  }
  read(): TracePacket[] {
    this.calls.push('read');
    return this.packets;
  }
}

const dir = tempSocketDir();
const socketPath = join(dir, 'admin.sock');
const trace = new RecordingTrace();
const server = await startAdminServer({ source: new SnapshotStateSource(sampleSnapshot()), socketPath, trace });
t.teardown(() => server.close());
const ctl = (...args: string[]) => run(['--socket', socketPath, ...args]);

void t.test('--help exits 0 and does nothing', async (t) => {
  for (const args of [['trace', '--help'], ['trace', 'start', '--help', '--count', '3']]) {
    const r = await ctl(...args);
    t.equal(r.code, EXIT.OK, args.join(' '));
    t.match(r.out, /usage: vrouterctl \[options\] trace start\|stop\|clear\|show/);
    t.match(r.out, /--filter K=V/);
  }
  t.same(trace.calls, [], 'no request reached the trace');
});

void t.test('start resolves names into the data plane filter', async (t) => {
  const r = await ctl('trace', 'start', '--count', '5', '--filter', 'peer=agent-7', '--filter', 'tunnel=site-a', '--filter', 'tenant=globex', '--filter', 'prefix=10.20.0.0/16');
  t.equal(r.code, EXIT.OK, r.err);
  t.same(trace.started.at(-1), {
    count: 5,
    peer: 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=',
    spis: [0xc1a2b3d4, 0x0badf00d],
    tenant: 2,
    prefix: '10.20.0.0/16',
  });
  t.equal(r.out, 'trace on: 0/5 packets recorded, filter tenant=globex peer=agent-7 tunnel=site-a prefix=10.20.0.0/16, 0 records lost\n');
  const byKey = await ctl('--json', 'trace', 'start', '--filter', 'peer=HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=');
  t.equal(byKey.code, EXIT.OK);
  t.same(trace.started.at(-1), { peer: 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=' }, 'a public key as it is; no count: the default');
  t.same((JSON.parse(byKey.out) as { filter: unknown }).filter, { tenant: null, peer: 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=', tunnel: null, prefix: null });
});

void t.test('bad flags are refused locally, naming the flag', async (t) => {
  const before = trace.calls.length;
  const cases: Array<[string[], RegExp]> = [
    [['trace', 'start', '--count', '0'], /--count: "0" is not a whole number 1\.\.100000/],
    [['trace', 'start', '--count', '12abc'], /--count: "12abc"/],
    [['trace', 'start', '--filter', 'vlan=3'], /--filter: "vlan=3" is not K=V with K one of tenant, peer, tunnel, prefix/],
    [['trace', 'start', '--filter', 'peer='], /--filter: peer needs a value/],
    [['trace', 'start', '--filter', 'peer=a', '--filter', 'peer=b'], /--filter: peer given twice/],
    [['trace', 'show', '--count', '3'], /--count is an option of trace start only/],
    [['trace', 'frobnicate'], /trace: unknown subcommand frobnicate/],
    [['trace'], /trace needs start\|stop\|clear\|show/],
    [['stats', '--filter', 'peer=a'], /--filter is not an option of stats/],
    [['trace', 'start', '--colour'], /Unknown option '--colour'/],
  ];
  for (const [args, msg] of cases) {
    const r = await ctl(...args);
    t.equal(r.code, EXIT.USAGE, args.join(' '));
    t.match(r.err, msg, args.join(' '));
  }
  t.equal(trace.calls.length, before, 'none reached the daemon');
});

void t.test('names the API cannot resolve, and what the data plane refuses: API errors', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['trace', 'start', '--filter', 'tenant=initech'], /CVLAN_ERR_API_BAD_REQUEST: tenant: no tenant "initech" \(HTTP 400\)/],
    [['trace', 'start', '--filter', 'peer=nobody'], /peer: no WireGuard peer named "nobody"/],
    [['trace', 'start', '--filter', 'tunnel=site-b'], /tunnel: site-b has no CHILD_SA now/],
    [['trace', 'start', '--filter', 'tunnel=nowhere'], /tunnel: no IPsec tunnel "nowhere"/],
    [['trace', 'start', '--filter', 'prefix=10.1.2.3'], /CVLAN_ERR_API_BAD_REQUEST: prefix: not a prefix \(HTTP 400\)/],
  ];
  for (const [args, msg] of cases) {
    const r = await ctl(...args);
    t.equal(r.code, EXIT.API, args.join(' '));
    t.match(r.err, msg);
  }
});

void t.test('show prints each packet\'s stages; --json gives the API view', async (t) => {
  trace.packets = [
    {
      id: '1000000100',
      atNs: 1_500_000_000,
      stages: [
        { stage: 'ingress', detail: 'ipsec worker 0: 120 bytes from 192.0.2.1:4500', device: 'ipsec', worker: 0, len: 120, from: '192.0.2.1:4500' },
        { stage: 'esp-decap', detail: 'spi 0xc1a2b3d4 seq 7', spi: 0xc1a2b3d4, seq: 7 },
        { stage: 'drop', detail: 'esp_replayed', reason: 'esp_replayed' },
        { stage: 'verdict', detail: 'dropped', verdict: 'drop' },
      ],
    },
  ];
  const human = await ctl('trace', 'show');
  t.equal(human.code, EXIT.OK);
  t.equal(
    human.out,
    [
      'trace on: 1/50 packets recorded, filter peer=HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=, 0 records lost',
      '',
      'packet 1 (1000000100) at 1.500000s',
      '  ingress     ipsec worker 0: 120 bytes from 192.0.2.1:4500',
      '  esp-decap   spi 0xc1a2b3d4 seq 7',
      '  drop        esp_replayed',
      '  verdict     dropped',
      '',
    ].join('\n'),
  );
  const json = await ctl('--json', 'trace', 'show');
  const v = JSON.parse(json.out) as { packets: { at_ns: number; stages: Record<string, unknown>[] }[] };
  t.equal(v.packets[0]!.at_ns, 1_500_000_000);
  t.same(v.packets[0]!.stages[1], { stage: 'esp-decap', detail: 'spi 0xc1a2b3d4 seq 7', spi: 'c1a2b3d4', seq: 7 }, 'SPIs as the tunnel views write them');
  t.equal(v.packets[0]!.stages[2]!.reason, 'esp_replayed');
  for (const sub of ['stop', 'clear'] as const) {
    const r = await ctl('trace', sub);
    t.equal(r.code, EXIT.OK);
    t.equal(trace.calls.at(-1), sub);
  }
  t.match((await ctl('trace', 'show')).out, /^trace off:/);
});
