/**
 * Side-by-side TCP throughput of every system under test, in one run on one machine: the only
 * comparison these shared, noisy machines allow. Rounds alternate the systems round-robin (with a
 * rotating start) so drift in background load spreads evenly instead of favouring whoever ran first.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/throughput.js [--systems a,b] [--rounds 3]
 *     (systems: ./systems.ts for WireGuard and the baselines, ./systems-ipsec.ts for IPsec and translation)
 *     [--duration 8] [--flows 1,4] [--omit 1] [--baseline wireguard-go] [--congestion cubic] [--no-write]
 *     [--compare LABEL=DIR]...  (every cvlan-* system again as `<name>@LABEL`, run from the build in
 *                                DIR — a checkout with dist/ and build/ — for before/after ratios in one run)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { benchArgs, usageExit } from './cli.js';
import { Lab } from '../test/harness/lab.js';
import { twoHosts } from '../test/harness/topology.js';
import { iperfClient, iperfServer } from '../test/harness/ping.js';
import { missingPrerequisites, tools } from '../test/harness/tools.js';
import { REPO_ROOT, useCvlanCli } from '../test/harness/cvlan.js';
import { SYSTEMS as WG_SYSTEMS, type SystemUnderTest } from './systems.js';
import { IPSEC_SYSTEMS } from './systems-ipsec.js';

const SYSTEMS: SystemUnderTest[] = [...WG_SYSTEMS, ...IPSEC_SYSTEMS];

interface Sample {
  system: string;
  flows: number;
  round: number;
  gbps: number;
  retransmits: number;
  bytes: number;
}

interface Summary {
  system: string;
  flows: number;
  samples: number;
  medianGbps: number;
  minGbps: number;
  maxGbps: number;
  /** Median over the baseline's median at the same flow count; undefined without a baseline. */
  ratioToBaseline: number | undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }).split('\n')[0]?.trim() ?? '';
  } catch (err) {
    const e = err as { stdout?: string };
    return e.stdout?.split('\n')[0]?.trim() ?? 'unknown';
  }
}

/** The host's default TCP congestion control, which new namespaces inherit. */
function hostCongestion(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function usage(msg: string): never {
  usageExit('throughput', `${msg} (systems: ${SYSTEMS.map((s) => s.name).join(', ')})`);
}

async function main(): Promise<void> {
  const values = benchArgs(
    'throughput',
    `usage: node dist/bench/throughput.js [options]   (as root; writes bench/results/)

  --systems LIST      comma-separated, of: ${SYSTEMS.map((s) => s.name).join(', ')} (default all)
  --rounds N          rounds, each system once per round (default 3)
  --duration S        seconds per iperf3 run (default 8)
  --omit S            seconds iperf3 leaves out at the start (default 1)
  --flows LIST        parallel TCP flows, comma-separated (default 1,4)
  --baseline NAME     the system the ratios are against (default wireguard-go)
  --congestion NAME   TCP congestion control of every iperf3 sender (default cubic, Linux's own
                      default, so the host's sysctl does not pick it; \`system\` for the host's)
  --compare L=DIR     also run the build in DIR under label L (repeatable)
  --no-write          print the results only
  -h, --help          this text`,
    {
      systems: { type: 'string', default: SYSTEMS.map((s) => s.name).join(',') },
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '8' },
      flows: { type: 'string', default: '1,4' },
      omit: { type: 'string', default: '1' },
      baseline: { type: 'string', default: 'wireguard-go' },
      congestion: { type: 'string', default: 'cubic' },
      'no-write': { type: 'boolean', default: false },
      compare: { type: 'string', multiple: true, default: [] },
    },
  );
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const omit = Number(values.omit);
  const flowsList = values.flows.split(',').map(Number);
  const congestion = values.congestion === 'system' ? undefined : values.congestion;
  if (congestion !== undefined && !/^[a-z0-9_]+$/.test(congestion)) usage('--congestion: an algorithm name, e.g. cubic, or system');
  if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds: a positive integer');
  if (!Number.isInteger(duration) || duration < 1) usage('--duration: seconds, a positive integer');
  if (!Number.isInteger(omit) || omit < 0) usage('--omit: seconds, an integer ≥ 0');
  if (flowsList.some((f) => !Number.isInteger(f) || f < 1)) usage('--flows: comma-separated positive integers');
  const wanted = values.systems.split(',').filter((s) => s !== '');
  const unknown = wanted.filter((w) => !SYSTEMS.some((s) => s.name === w));
  if (unknown.length > 0) usage(`unknown system(s): ${unknown.join(', ')}`);
  const compared = values.compare.map((spec) => {
    const m = /^([\w.-]+)=(.+)$/.exec(spec);
    if (m === null) usage(`--compare: LABEL=DIR, got ${spec}`);
    const cli = join(m[2] as string, 'dist', 'src', 'cli', 'cvlan-vrouter.js');
    if (!existsSync(cli)) usage(`--compare ${spec}: ${cli} does not exist (build that checkout first)`);
    return { label: m[1] as string, cli };
  });
  // Each cvlan-* system once more per compared build, run from that build's CLI.
  for (const { label, cli } of compared) {
    for (const name of [...wanted]) {
      const sys = SYSTEMS.find((s) => s.name === name) as SystemUnderTest;
      if (!name.startsWith('cvlan-') || sys.thisBuildOnly) continue;
      const twin = `${name}@${label}`;
      SYSTEMS.push({ ...sys, name: twin, description: `${sys.description} — build ${label}`, setup: (lab, h) => useCvlanCli(cli, () => sys.setup(lab, h)) });
      wanted.push(twin);
    }
  }
  const base = missingPrerequisites('iperf3', 'setpriv');
  if (base !== undefined) usage(`cannot run: ${base}`);

  const skipped: { system: string; reason: string }[] = [];
  const selected: SystemUnderTest[] = [];
  for (const name of wanted) {
    const sys = SYSTEMS.find((s) => s.name === name) as SystemUnderTest;
    const why = sys.missing();
    if (why !== undefined) {
      skipped.push({ system: name, reason: why });
      process.stderr.write(`skipping ${name}: ${why}\n`);
    } else selected.push(sys);
  }

  const startedAt = new Date();
  const labs: Lab[] = [];
  const targets = new Map<string, { ns: string; target: string }>();
  const samples: Sample[] = [];
  try {
    // All topologies up front: idle tunnels cost next to nothing, and round-robin needs them all.
    for (const sys of selected) {
      const lab = Lab.create({ label: 'bench' });
      labs.push(lab);
      const h = await twoHosts(lab);
      try {
        const r = await sys.setup(lab, h);
        const { target, serverNs } = typeof r === 'string' ? { target: r, serverNs: h.b } : r;
        await iperfServer(lab, serverNs, { bind: target });
        targets.set(sys.name, { ns: h.a, target });
        process.stderr.write(`${sys.name}: ready (iperf3 → ${target})\n`);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        skipped.push({ system: sys.name, reason: `setup failed: ${reason}` });
        process.stderr.write(`skipping ${sys.name}: setup failed: ${reason}\n`);
        await lab.teardown();
      }
    }
    const order = selected.filter((s) => targets.has(s.name));
    for (let round = 1; round <= rounds; round++) {
      for (const flows of flowsList) {
        for (let i = 0; i < order.length; i++) {
          const sys = order[(i + round - 1) % order.length] as SystemUnderTest;
          const { ns, target } = targets.get(sys.name) as { ns: string; target: string };
          const r = await iperfClient(ns, target, { duration, streams: flows, omit, congestion });
          const gbps = r.bitsPerSecond / 1e9;
          samples.push({ system: sys.name, flows, round, gbps, retransmits: r.retransmits, bytes: r.bytes });
          process.stderr.write(`round ${round}/${rounds} ${sys.name} -P ${flows}: ${gbps.toFixed(3)} Gbit/s\n`);
        }
      }
    }
  } finally {
    for (const lab of labs.reverse()) await lab.teardown();
  }

  const summaries: Summary[] = [];
  for (const flows of flowsList) {
    const baseSamples = samples.filter((s) => s.system === values.baseline && s.flows === flows).map((s) => s.gbps);
    const baseMedian = baseSamples.length > 0 ? median(baseSamples) : undefined;
    for (const sys of selected) {
      const xs = samples.filter((s) => s.system === sys.name && s.flows === flows).map((s) => s.gbps);
      if (xs.length === 0) continue;
      const med = median(xs);
      summaries.push({
        system: sys.name,
        flows,
        samples: xs.length,
        medianGbps: med,
        minGbps: Math.min(...xs),
        maxGbps: Math.max(...xs),
        ratioToBaseline: baseMedian !== undefined && baseMedian > 0 ? med / baseMedian : undefined,
      });
    }
  }

  const head = ['system', 'flows', 'median Gbit/s', 'min', 'max', `× ${values.baseline}`];
  const rows = summaries.map((s) => [
    s.system,
    String(s.flows),
    s.medianGbps.toFixed(3),
    s.minGbps.toFixed(3),
    s.maxGbps.toFixed(3),
    s.ratioToBaseline !== undefined ? s.ratioToBaseline.toFixed(2) : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  process.stdout.write(`${fmt(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(fmt).join('\n')}\n`);
  for (const s of skipped) process.stdout.write(`skipped ${s.system}: ${s.reason}\n`);

  const result = {
    benchmark: 'throughput',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    settings: { systems: wanted, compare: compared, rounds, durationSeconds: duration, omitSeconds: omit, flows: flowsList, baseline: values.baseline, congestion: congestion ?? `system (${hostCongestion()})` },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      kernel: release(),
      node: process.version,
      loadAverageAtStart: loadavg(),
    },
    tools: {
      wireguardGo: version(tools.wireguardGo, ['--version']),
      boringtun: version(tools.boringtun, ['--version']),
      iperf3: version(tools.iperf3, ['--version']),
    },
    systems: Object.fromEntries(SYSTEMS.filter((s) => wanted.includes(s.name)).map((s) => [s.name, s.description])),
    summaries,
    samples,
    skipped,
  };
  if (!values['no-write']) {
    const dir = join(REPO_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
    const json = `${JSON.stringify(result, null, 2)}\n`;
    const file = join(dir, `throughput-${stamp}.json`);
    writeFileSync(file, json);
    writeFileSync(join(dir, 'latest.json'), json);
    process.stdout.write(`results: ${file}\n`);
  }
}

await main();
