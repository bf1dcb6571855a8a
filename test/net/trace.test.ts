// The packet trace on a translated path (the demo topology: legacy LAN ⇄ IPsec ⇄ cvlan-vrouter ⇄
// WireGuard ⇄ agent): one packet's trace shows its ESP and its WireGuard stages, linked across
// the handoff; every filter condition holds for it; a filter that excludes it records nothing;
// the count limit stops the trace; a dropped packet shows its drop reason.
import t from 'tap';
import { join } from 'node:path';
import { startDemoTopology, DEMO_NET } from '../../src/cli/demo.js';
import type { TraceView } from '../../src/api/trace.js';
import { useLab, closeLab } from '../harness/tap.js';
import { missingPrerequisites, tools } from '../harness/tools.js';
import { ping, waitForPing } from '../harness/ping.js';
import { run } from '../harness/exec.js';
import { cvlanTestbedMissing, REPO_ROOT } from '../harness/cvlan.js';

const CTL = join(REPO_ROOT, 'dist', 'src', 'cli', 'vrouterctl.js');
const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'wg', 'wireguardGo');

t.test('trace: a translated packet, filters, the count limit and a drop reason', { skip }, async (t) => {
  const lab = useLab(t, { label: 'trace' });
  const topo = await startDemoTopology(lab);
  const ctl = (...args: string[]) => run(tools.node, [CTL, '--socket', topo.admin, ...args], { allowFailure: true, timeoutMs: 20_000 });
  const show = async (): Promise<TraceView> => {
    const r = await ctl('--json', 'trace', 'show');
    t.equal(r.code, 0, `trace show: exit 0 ${r.stderr}`);
    return JSON.parse(r.stdout) as TraceView;
  };
  const names = (p: TraceView['packets'][number]) => p.stages.map((s) => s.stage);
  const lanPing = (count: number) => ping(topo.nsL, DEMO_NET.agentInner, { count, source: DEMO_NET.legacyLan });

  await waitForPing(topo.nsL, DEMO_NET.agentInner, 20_000, DEMO_NET.legacyLan);

  // Every condition at once: each holds at a different stage of the same packet.
  const filter = ['--filter', 'tenant=demo', '--filter', 'tunnel=legacy-site', '--filter', 'peer=agent', '--filter', `prefix=${DEMO_NET.legacyLan}/32`];
  const start = await ctl('trace', 'start', '--count', '4', ...filter);
  t.equal(start.code, 0, `trace start: exit 0 ${start.stderr}`);
  t.match(start.stdout, /^trace on: 0\/4 packets recorded, filter tenant=demo peer=agent tunnel=legacy-site prefix=10\.10\.0\.1\/32/);
  t.equal((await lanPing(2)).received, 2, 'two echo requests and their replies');
  t.equal((await lanPing(2)).received, 2, 'more traffic once the count is reached');
  const seen = await show();
  t.equal(seen.packets.length, 4, 'the count limit: 4 packets recorded, no more');
  t.same({ on: seen.status.on, count: seen.status.count, remaining: seen.status.remaining }, { on: false, count: 4, remaining: 0 }, 'the trace stopped itself');

  const request = seen.packets.find((p) => names(p).includes('esp-decap'));
  t.ok(request, 'an echo request: ESP in');
  if (request) {
    t.same(
      names(request).filter((n) => n !== 'inner'),
      ['ingress', 'esp-decap', 'tenant', 'handoff', 'wg-peer', 'wg-encap', 'verdict'],
      `ESP stages then WireGuard stages of the same packet: ${names(request).join(' ')}`,
    );
    const s = (n: string) => request.stages.find((x) => x.stage === n)!;
    t.equal(s('ingress').device, 'ipsec');
    t.match(s('esp-decap').spi, /^[0-9a-f]{8}$/, 'the SPI');
    t.ok(s('esp-decap').seq! >= 1, 'the ESP sequence number');
    t.same([s('handoff').device, s('handoff').to], ['ipsec', 'wireguard'], 'handed from the IPsec device to the WireGuard device');
    t.equal(s('wg-peer').table, 'allowed-ips');
    t.ok(s('wg-encap').to!.startsWith(`${DEMO_NET.agent}:`), 'sent to the agent\'s endpoint');
    t.equal(s('verdict').verdict, 'handed-off');
    t.same([s('inner').src, s('inner').dst], [DEMO_NET.legacyLan, DEMO_NET.agentInner], 'the inner header');
  }
  const reply = seen.packets.find((p) => names(p).includes('wg-decap'));
  t.ok(reply, 'an echo reply: WireGuard in');
  if (reply) {
    t.same(
      names(reply).filter((n) => n !== 'inner'),
      ['ingress', 'wg-decap', 'wg-peer', 'tenant', 'handoff', 'esp-encap', 'verdict'],
      `WireGuard stages then ESP stages: ${names(reply).join(' ')}`,
    );
    t.equal(reply.stages.find((x) => x.stage === 'wg-peer')!.table, 'receiver');
    t.equal(reply.stages.find((x) => x.stage === 'esp-encap')!.to, `${DEMO_NET.legacy}:4500`, 'sealed on the SA to the legacy router');
  }

  // A filter the traffic does not meet records nothing, and the trace stays on.
  t.equal((await ctl('trace', 'start', '--filter', 'prefix=10.99.0.0/16')).code, 0);
  t.equal((await lanPing(3)).received, 3);
  const none = await show();
  t.equal(none.packets.length, 0, 'an excluding filter: nothing recorded');
  t.equal(none.status.on, true, 'still on, waiting for a match');
  const bad = await ctl('trace', 'start', '--filter', 'peer=nobody');
  t.equal(bad.code, 3, 'an unknown peer: API error');
  t.match(bad.stderr, /CVLAN_ERR_API_BAD_REQUEST: peer: no WireGuard peer named "nobody"/);
  const badPrefix = await ctl('trace', 'start', '--filter', 'prefix=10.1.2.3/99');
  t.equal(badPrefix.code, 3);
  t.match(badPrefix.stderr, /prefix: "10\.1\.2\.3\/99" is not an address prefix/, 'the data plane names the field it refuses');

  // A drop and its reason: a 1420-byte DF packet fits the agent's WireGuard but not the ESP
  // tunnel; the handoff drops it (and answers "fragmentation needed").
  t.equal((await ctl('trace', 'start', '--count', '1', '--filter', `prefix=${DEMO_NET.legacyLan}/32`)).code, 0);
  await ping(topo.nsA, DEMO_NET.legacyLan, { count: 1, size: 1392, dontFragment: true });
  const dropped = await show();
  t.equal(dropped.packets.length, 1);
  const d = dropped.packets[0]!;
  t.ok(names(d).includes('wg-decap'), 'the oversized packet came in on WireGuard');
  t.same(
    d.stages.filter((s) => s.stage === 'drop').map((s) => s.reason),
    ['oversized'],
    `its drop reason from the drop table: ${names(d).join(' ')}`,
  );
  const human = await ctl('trace', 'show');
  t.match(human.stdout, /^trace off: 1\/1 packets recorded/);
  t.match(human.stdout, /\n {2}drop {8}oversized\n/, 'the human view prints the drop reason');

  t.equal((await ctl('trace', 'clear')).code, 0);
  t.equal((await show()).packets.length, 0, 'clear empties the rings');
  await closeLab(t, lab);
});
