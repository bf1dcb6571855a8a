// A tenant's local network on a TUN of its own ("a cloud subnet"): the TUN is moved into the
// cloud namespace, addressed there, and the tenant's other prefixes are routed into it. The cloud
// host reaches the legacy IPsec site and the WireGuard agent, both reach it, and a spoofed source
// from the cloud is dropped and counted.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { adminGet } from '../../src/api/client.js';
import { useLab, closeLab } from '../harness/tap.js';
import { vrouterRun } from '../harness/vrouter.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { randomSuffix } from '../harness/names.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites } from '../harness/tools.js';
import { ping, waitForPing } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'wg', 'wireguardGo');
const LEGACY_LAN = '10.10.0.1';
const AGENT = '10.20.0.2';
const CLOUD = '10.30.0.1';

t.test('a cloud namespace behind a tenant TUN reaches the IPsec site and the WireGuard agent', { skip }, async (t) => {
  const lab = useLab(t, { label: 'ttun' });
  const [nsL, nsR, nsA, nsC] = [await lab.namespace('legacy'), await lab.namespace('vr'), await lab.namespace('agent'), await lab.namespace('cloud')];
  await lab.veth({ ns: nsL, addresses: ['192.168.31.2/24'] }, { ns: nsR, addresses: ['192.168.31.1/24'] });
  await lab.veth({ ns: nsA, addresses: ['192.168.32.2/24'] }, { ns: nsR, addresses: ['192.168.32.1/24'] });
  await lab.addAddress(nsL, 'lo', `${LEGACY_LAN}/32`);
  const psk = randomBytes(24).toString('base64');
  const [vrKeys, agentKeys] = [await genKeyPair(), await genKeyPair()];
  const tun = `cvc${randomSuffix(5)}`;
  const v = await vrouterRun(lab, nsR, {
    listenAddress: '192.168.31.1',
    logLevel: 'info',
    document: {
      vrouter_id: 'vr',
      tenant_id: 'acme',
      tunnels: [
        {
          id: 'site',
          type: 'ipsec',
          local_id: 'vr.ttun.cvlan',
          remote_id: 'legacy.ttun.cvlan',
          auth: { method: 'psk', psk },
          local_subnets: ['10.20.0.0/24', '10.30.0.0/24'],
          remote_subnets: ['10.10.0.0/24'],
        },
      ],
      wireguard: { listen_port: 51820, private_key: vrKeys.privateKey },
      wireguard_peers: [{ name: 'agent', public_key: agentKeys.publicKey, allowed_ips: [`${AGENT}/32`] }],
      tun: [{ name: tun, netns: nsC, addresses: [`${CLOUD}/24`], subnets: ['10.30.0.0/24'] }],
    },
  });
  const legacy = await strongswanPeer(lab, nsL, {
    localAddr: '192.168.31.2',
    remoteAddr: '192.168.31.1',
    localId: 'legacy.ttun.cvlan',
    remoteId: 'vr.ttun.cvlan',
    localTs: ['10.10.0.0/24'],
    remoteTs: ['10.20.0.0/24', '10.30.0.0/24'],
    auth: { method: 'psk', psk },
    forceEncap: true,
  });
  await legacy.initiate(20);
  await wireguardGo(lab, nsA, {
    keys: agentKeys,
    addresses: [`${AGENT}/24`],
    peers: [{ publicKey: vrKeys.publicKey, endpoint: '192.168.32.1:51820', allowedIps: ['10.10.0.0/24', '10.30.0.0/24'], persistentKeepalive: 25 }],
    routes: ['10.10.0.0/24', '10.30.0.0/24'],
  });

  t.ok((await waitForPing(nsA, CLOUD, 20_000, AGENT)).received > 0, 'agent → cloud (WireGuard in, into the tenant TUN)');
  t.equal((await ping(nsC, AGENT, { count: 3, source: CLOUD })).received, 3, 'cloud → agent (out of the TUN, WireGuard out)');
  t.equal((await ping(nsL, CLOUD, { count: 3, source: LEGACY_LAN })).received, 3, 'legacy LAN → cloud (ESP in)');
  t.equal((await ping(nsC, LEGACY_LAN, { count: 3, source: CLOUD })).received, 3, 'cloud → legacy LAN (ESP out)');

  // A source the TUN's subnets do not hold: dropped where it enters.
  await lab.addAddress(nsC, 'lo', '10.31.0.1/32');
  const before = JSON.parse((await adminGet({ kind: 'unix', socketPath: v.admin }, '/v1/drops')).body) as { drops: { reason: string; count: number }[] };
  t.equal((await ping(nsC, LEGACY_LAN, { count: 3, source: '10.31.0.1' })).received, 0, 'spoofed source from the cloud: no reply');
  const after = JSON.parse((await adminGet({ kind: 'unix', socketPath: v.admin }, '/v1/drops')).body) as { drops: { reason: string; count: number }[] };
  const n = (d: typeof before, r: string): number => d.drops.filter((x) => x.reason === r).reduce((s, x) => s + x.count, 0);
  t.ok(n(after, 'source_not_allowed') - n(before, 'source_not_allowed') >= 3, 'counted as source_not_allowed');
  const tenants = JSON.parse((await adminGet({ kind: 'unix', socketPath: v.admin }, '/v1/tenants')).body) as { tenants: { id: string; tuns: number }[] };
  t.equal(tenants.tenants[0]?.tuns, 1, 'the tenant lists its TUN');
  await closeLab(t, lab);
});
