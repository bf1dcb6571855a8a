/**
 * How long validating a large controller document holds the event loop: a 2000-tunnel document
 * (100 tenants × 20 IPsec tunnels and 20 WireGuard peers each), loaded and planned against itself
 * as a reload does. Decides whether validation belongs on a worker thread (piscina): it does only
 * if one load stalls the loop for longer than an admin request may wait.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/config-validation.js [--tenants 100] [--per 20] [--runs 5]
 */
import { benchArgs } from './cli.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadDesiredState } from '../src/config/load.js';
import { disposeDesiredState } from '../src/config/model.js';
import { plan } from '../src/reconcile/plan.js';
import { genkey, pubkey } from '../src/secrets/keys.js';

const values = benchArgs(
  'config-validation',
  `usage: node dist/bench/config-validation.js [--tenants 100] [--per 20] [--runs 5]

  --tenants N   tenants in the document (default 100)
  --per N       tunnels and peers per tenant (default 20)
  --runs N      validations timed (default 5)
  -h, --help    this text`,
  { tenants: { type: 'string', default: '100' }, per: { type: 'string', default: '20' }, runs: { type: 'string', default: '5' } },
);
const tenants = Number(values.tenants);
const per = Number(values.per);
const runs = Number(values.runs);

const doc = {
  vrouter_id: 'vr',
  tenants: Array.from({ length: tenants }, (_, ti) => ({
    tenant_id: `t${ti}`,
    tunnels: Array.from({ length: per }, (_, i) => ({
      id: `t${ti}-site${i}`,
      type: 'ipsec',
      remote_id: `site${i}.t${ti}.example.net`,
      auth: { method: 'psk', psk: `a-pre-shared-key-of-tenant-${ti}-site-${i}` },
      local_subnets: [`10.${ti % 250}.0.0/24`],
      remote_subnets: [`10.${ti % 250}.${i + 1}.0/24`],
    })),
    wireguard: { listen_port: 20000 + ti, private_key: genkey() },
    wireguard_peers: Array.from({ length: per }, (_, i) => ({ public_key: pubkey(genkey()), allowed_ips: [`172.${16 + (ti % 16)}.${i}.${Math.floor(ti / 16)}/32`] })),
  })),
};
const LOCAL = '[network]\nlisten_address = "192.0.2.1"\n';
const key = Buffer.alloc(32, 7);

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
const times: number[] = [];
for (let r = 0; r < runs; r++) {
  const t0 = performance.now();
  const a = loadDesiredState({ controllerDocs: [doc], localToml: LOCAL, stateDir: null });
  const b = loadDesiredState({ controllerDocs: [doc], localToml: LOCAL, stateDir: null });
  const ops = plan(a, b, key);
  times.push(performance.now() - t0);
  if (ops.length !== 0) throw new Error(`an unchanged document planned ${ops.length} operations`);
  disposeDesiredState(a);
  disposeDesiredState(b);
  await new Promise((r) => setTimeout(r, 20));
}
h.disable();
times.sort((x, y) => x - y);
console.log(
  JSON.stringify({
    tunnels: tenants * per,
    peers: tenants * per,
    load_twice_and_plan_ms: { min: +times[0]!.toFixed(1), median: +times[Math.floor(times.length / 2)]!.toFixed(1), max: +times.at(-1)!.toFixed(1) },
    event_loop_delay_max_ms: +(h.max / 1e6).toFixed(1),
  }),
);
