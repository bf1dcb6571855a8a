/**
 * Remote-access benchmark (issue 13): N EAP-MSCHAPv2 clients of one tenant. Not a timed test; run
 * as root and state the machine's load with the figures:
 *
 *   npx tsc -p tsconfig.json && node dist/bench/remote-access.js --clients 100 [--no-write]
 *
 * `cvlan-vrouter run` with one tenant whose remote access leases from a /22; one strongSwan charon
 * with kernel-libipsec in another namespace holds N client connections, each from its own source
 * address asking for `vips = 0.0.0.0`. Measured:
 *   - connect_s: the N clients initiated one after the other, each until its CHILD_SA is up
 *     (`swanctl --initiate` returns), and all listed in GET /v1/clients;
 *   - rss_mib: VmRSS of the daemon (node) and its charon with no client and with N;
 *     per_client_kib: their growth divided by N.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './cli.js';
import { adminGet } from '../src/api/client.js';
import type { RemoteAccessView } from '../src/remote-access/service.js';
import { withLab, type Lab } from '../test/harness/lab.js';
import { vrouterRun } from '../test/harness/vrouter.js';
import { makePki } from '../test/harness/pki.js';
import { ikeClients } from '../test/harness/ike-clients.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../test/harness/cvlan.js';
import { missingPrerequisites } from '../test/harness/tools.js';
import { sleep } from '../test/harness/exec.js';

const LISTEN = '192.168.60.1';

function rssMib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** The daemon's charon: its descendant process named `charon`. */
function childCharon(pid: number): number | undefined {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  for (const k of kids) {
    try {
      if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'charon') return k;
      const deeper = childCharon(k);
      if (deeper !== undefined) return deeper;
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

async function measure(lab: Lab, n: number): Promise<object> {
  const vr = await lab.namespace('vr');
  const cl = await lab.namespace('cl');
  if (n < 1 || n > 240) throw new Error('--clients: 1..240 (client addresses share one /24 with the listen address)');
  const addr = (i: number): string => `192.168.60.${10 + i}`;
  await lab.veth({ ns: cl, name: 'cl0', addresses: [`${addr(0)}/24`] }, { ns: vr, addresses: [`${LISTEN}/24`] });
  for (let i = 1; i < n; i++) await lab.addAddress(cl, 'cl0', `${addr(i)}/24`);
  const pki = await makePki(lab, ['vpn.bench.test'], 'bench CA');
  const users = Array.from({ length: n }, (_, i) => ({ name: `user${i}@bench.test`, secret: randomBytes(12).toString('base64') }));
  const v = await vrouterRun(lab, vr, {
    listenAddress: LISTEN,
    timeoutMs: 60_000,
    document: {
      tenant_id: 'bench',
      remote_access: {
        local_id: 'vpn.bench.test',
        certificate: readFileSync(pki.entities['vpn.bench.test']!.cert, 'utf8'),
        private_key: readFileSync(pki.entities['vpn.bench.test']!.key, 'utf8'),
        pools: [{ range: '10.99.0.0/22', dns: ['10.1.0.53'] }],
        local_subnets: ['10.1.0.0/16'],
        users,
      },
    },
  });
  const node = v.process.pid;
  const charon = childCharon(node);
  const c = await ikeClients(lab, cl, {
    server: LISTEN,
    serverId: 'vpn.bench.test',
    ca: pki.ca,
    remoteTs: ['10.1.0.0/16'],
    clients: users.map((u, i) => ({ name: `c${i}`, localAddr: addr(i), id: u.name, eap: { user: u.name, secret: u.secret }, vips: ['0.0.0.0'] })),
  });
  await sleep(2000);
  const before = { node: rssMib(node), charon: charon ? rssMib(charon) : 0 };
  const admin = { kind: 'unix' as const, socketPath: v.admin };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await c.initiate(`c${i}`, 30);
  let listed = 0;
  for (let i = 0; i < 100 && listed < n; i++) {
    listed = (JSON.parse((await adminGet(admin, '/v1/clients')).body) as RemoteAccessView).clients.length;
    if (listed < n) await sleep(100);
  }
  const connectS = Number(process.hrtime.bigint() - t0) / 1e9;
  await sleep(2000);
  const after = { node: rssMib(node), charon: charon ? rssMib(charon) : 0 };
  const perClientKib = ((after.node + after.charon - before.node - before.charon) * 1024) / n;
  return {
    clients: n,
    listed,
    connect_s: Number(connectS.toFixed(2)),
    per_client_ms: Number(((connectS * 1000) / n).toFixed(1)),
    rss_mib: { before, after },
    per_client_kib: Number(perClientKib.toFixed(1)),
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
  };
}

const values = benchArgs(
  'remote-access',
  `usage: node dist/bench/remote-access.js [--clients 100] [--no-write]   (as root; writes bench/results/)

  --clients N   EAP clients to connect, one after the other (default 100)
  --no-write    print the results only
  -h, --help    this text`,
  { clients: { type: 'string', default: '100' }, 'no-write': { type: 'boolean', default: false } },
);
const missing = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'pki');
if (missing) {
  console.error(`cannot run: ${missing}`);
  process.exit(2);
}
const result = await withLab((lab) => measure(lab, Number(values.clients)), { label: 'rabench' });
console.log(JSON.stringify(result, null, 2));
if (!values['no-write']) {
  const dir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `remote-access-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify(result, null, 2)}\n`);
}
