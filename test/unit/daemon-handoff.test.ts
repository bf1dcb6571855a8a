// The handoff plan (src/daemon/handoff.ts): which devices each device's workers hand packets to,
// per tenant. Devices are plain strings here; the plan is what the vrouter gives setHandoff.
import t from 'tap';
import { handoffPlan, type HandoffTenant } from '../../src/daemon/handoff.js';

const byDevice = <D>(p: ReturnType<typeof handoffPlan<D>>) => new Map(p.devices.map((d) => [d.device, d.handoff]));

t.test('one tenant: every device hands to every other, unstamped; only a TUN is isolated', async (t) => {
  const p = handoffPlan<string>([{ id: 'acme', tag: 1, tunnels: ['site-a'], wg: 'wg', tuns: ['lan'] }], 'ipsec', [], new Map([['site-a', 1]]));
  t.same(p.ipsecTenants, [], 'one tenant: the IPsec device tags nothing');
  const m = byDevice(p);
  t.same([...m.keys()], ['wg', 'ipsec', 'lan']);
  t.same(m.get('wg'), { stamp: 0, isolated: false, targets: [{ device: 'ipsec', tenant: 0 }, { device: 'lan', tenant: 0 }] });
  t.same(m.get('ipsec'), { stamp: 0, isolated: false, targets: [{ device: 'wg', tenant: 0 }, { device: 'lan', tenant: 0 }] });
  t.same(m.get('lan'), { stamp: 0, isolated: true, targets: [{ device: 'wg', tenant: 0 }, { device: 'ipsec', tenant: 0 }] }, "a TUN's leftovers are dropped, not written back");
});

t.test('one tenant with a single device: nothing to hand to', async (t) => {
  const p = handoffPlan<string>([{ id: 'acme', tag: 1, tunnels: [], wg: 'wg', tuns: [] }], undefined, [], new Map());
  t.same(p.devices, [{ device: 'wg', handoff: null }]);
  t.same(handoffPlan<string>([], 'ipsec', [], new Map()), { devices: [], ipsecTenants: [] }, 'no tenant: no plan');
});

t.test('several tenants: stamped, isolated, tunnels tagged by if_id, rules only into their tenant', async (t) => {
  const tenants: HandoffTenant<string>[] = [
    { id: 'red', tag: 1, tunnels: ['red-site'], wg: 'wg-red', tuns: [] },
    { id: 'blue', tag: 2, tunnels: ['blue-site', 'blue-new'], wg: 'wg-blue', tuns: ['lan-blue'] },
    { id: 'green', tag: 3, tunnels: [], tuns: [] },
  ];
  const rules = [
    { fromTenant: 'red', fromPrefix: '10.1.0.0/24', toTenant: 'blue', toPrefix: '10.2.0.0/24' },
    { fromTenant: 'nobody', fromPrefix: '10.9.0.0/24', toTenant: 'blue', toPrefix: '10.2.0.0/24' },
  ];
  // blue-new has no if_id yet: it is left out of the IPsec tenant table, not given a bogus one.
  const p = handoffPlan(tenants, 'ipsec', rules, new Map([['red-site', 7], ['blue-site', 9]]));
  t.same(p.ipsecTenants, [{ ifId: 7, tenant: 1 }, { ifId: 9, tenant: 2 }]);
  const m = byDevice(p);
  t.same([...m.keys()], ['wg-red', 'wg-blue', 'lan-blue', 'ipsec']);
  t.equal(m.get('wg-red')!.stamp, 1);
  t.equal(m.get('wg-blue')!.stamp, 2);
  t.equal(m.get('lan-blue')!.stamp, 2);
  t.equal(m.get('ipsec')!.stamp, 0, 'IPsec tags packets itself, by tunnel');
  t.ok([...m.values()].every((h) => h!.isolated), 'every device drops what no target takes');
  const targets = m.get('ipsec')!.targets;
  t.same(
    targets.map((x) => [x.device, x.tenant]),
    [['wg-red', 1], ['ipsec', 1], ['wg-blue', 2], ['ipsec', 2], ['lan-blue', 2]],
    'green has no device and no tunnel: no target',
  );
  const blueRule = [{ fromTenant: 1, source: '10.1.0.0/24', destination: '10.2.0.0/24' }];
  t.same(targets.find((x) => x.device === 'wg-blue')!.rules, blueRule, 'a rule opens one prefix pair into blue; one from an unknown tenant is ignored');
  t.same(targets.find((x) => x.device === 'wg-red')!.rules, [], 'nothing opens red');
});
