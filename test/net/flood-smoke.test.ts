// A short run of the flood generator (bench/flood-generator.ts) against cvlan-vrouter's
// WireGuard: initiations with a valid MAC1 are answered with cookie replies once the device is
// under load (so the generator's MAC1 is right for our key), bad MAC1 ones are never answered.
import t from 'tap';
import { join } from 'node:path';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { cvlanWireguard, wireguardGo, wgPair } from '../harness/wireguard.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../harness/cvlan.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { run } from '../harness/exec.js';
import { ping, waitForPing } from '../harness/ping.js';

const GENERATOR = join(REPO_ROOT, 'dist', 'bench', 'flood-generator.js');
const skip = cvlanTestbedMissing() ?? missingPrerequisites('wireguardGo', 'wg');

async function generate(ns: string, args: string[]): Promise<{ sent: number; received: number; cookie_replies: number }> {
  const out = (await run(tools.node, [GENERATOR, ...args, '--duration', '2', '--rate', '2000', '--threads', '2'], { ns, timeoutMs: 30_000 })).stdout;
  return JSON.parse(out.trim().split('\n').pop()!) as { sent: number; received: number; cookie_replies: number };
}

t.test('flood generator: valid MAC1 draws cookie replies, bad MAC1 nothing; the tunnel keeps working', { skip }, async (t) => {
  const lab = useLab(t, { label: 'flood' });
  const h = await twoHosts(lab);
  const [a] = await wgPair(lab, [h.a, h.b], [cvlanWireguard, wireguardGo], { underlay: [h.addrA, h.addrB], inner: ['10.95.0.1/24', '10.95.0.2/24'] });
  await waitForPing(h.b, '10.95.0.1', 15_000);
  const target = `${h.addrA}:${a.listenPort}`;
  const bad = await generate(h.b, ['--kind', 'wg-bad-mac1', '--target', target]);
  t.ok(bad.sent >= 3000, `${bad.sent} bad-MAC1 initiations sent`);
  t.equal(bad.received, 0, 'never answered');
  const good = await generate(h.b, ['--kind', 'wg-mac1', '--target', target, '--public-key', a.keys.publicKey]);
  t.ok(good.sent >= 3000, `${good.sent} valid-MAC1 initiations sent`);
  // Above 500 handshake messages a second the device wants MAC2 and answers with a cookie.
  t.ok(good.cookie_replies > good.sent / 2, `${good.cookie_replies} cookie replies`);
  t.equal((await ping(h.b, '10.95.0.1', { count: 3, intervalMs: 100 })).received, 3, 'tunnel still carries traffic');
  await closeLab(t, lab);
});
