// Changes under the controller that touch more than one device, live, while UDP crosses the
// untouched WireGuard tunnel of the agent (0 lost, counted as in controller.test.ts): the first
// IPsec tunnel (charon and the IPsec device start on demand; with UDP 500 held by another socket
// the start fails and everything is rolled back), an ESP proposal change of the live tunnel
// (strongSwan as the other end negotiates the new one), one tenant → two (the namespace's routes
// into the devices go; a second tenant that fails to open rolls the mode back), the second
// tenant's WireGuard key rotated, and back to one
// (the routes return), `[network] listen_address` changed by SIGHUP (the IPsec service reopens
// on the new address), and the last tunnel removed (charon stops, UDP 500 closes).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerView, TunnelView } from '../../src/api/state.js';
import { useLab, closeLab } from '../harness/tap.js';
import type { Lab } from '../harness/lab.js';
import { run } from '../harness/exec.js';
import { tools, missingPrerequisites } from '../harness/tools.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { wireguardGo, genKeyPair } from '../harness/wireguard.js';
import { randomSuffix } from '../harness/names.js';
import { ping, waitForPing, iperfServer } from '../harness/ping.js';
import { strongswanPeer } from '../harness/strongswan.js';
import { AGENT, CLOUD, admin, describeLoss, managedVrouter, setDocument, startController, statusUntil, udpAcross } from './controller-fixture.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'wg', 'wireguardGo', 'iperf3');
const LEGACY_LAN = '10.40.0.1';

/** The vrouter's UDP sockets on `port` in `ns` (`ss` lines; empty when nothing listens). */
async function udpListening(ns: string, port: number): Promise<string> {
  return (await run('ss', ['-Hlun', `sport = :${port}`], { ns })).stdout.trim();
}

/** A process in `ns` holding UDP `port` on every address, so that a bind there fails. */
async function holdUdp(lab: Lab, ns: string, port: number): Promise<{ stop: () => Promise<void> }> {
  const p = lab.spawn(`udp-holder-${port}@${ns}`, 'python3', ['-c', `import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(("0.0.0.0",${port}))\nprint("bound",flush=True)\ntime.sleep(3600)`], { ns });
  await p.waitReady({ line: 'bound' });
  return { stop: async () => void (await p.stop()) };
}

t.test('under the controller, the first IPsec tunnel, a proposal change, one tenant ⇄ two, a key rotation, the listen address and the last tunnel apply live', { skip, timeout: 180_000 }, async (t) => {
  const lab = useLab(t, { label: 'ctrllive' });
  const [nsV, nsA, nsL, nsC] = [await lab.namespace('vr'), await lab.namespace('agent'), await lab.namespace('legacy'), await lab.namespace('cloud')];
  await lab.veth({ ns: nsA, addresses: ['192.168.42.2/24'] }, { ns: nsV, addresses: ['192.168.42.1/24'] });
  const [, vrToLegacy] = await lab.veth({ ns: nsL, addresses: ['192.168.44.2/24'] }, { ns: nsV, addresses: ['192.168.44.1/24'] });
  await lab.addAddress(nsL, 'lo', `${LEGACY_LAN}/32`);
  const [vrKeys, agentKeys, otherKeys, uKeys, uKeys2] = [await genKeyPair(), await genKeyPair(), await genKeyPair(), await genKeyPair(), await genKeyPair()];
  const sfx = randomSuffix(4);
  const [T, U] = [`t${sfx}`, `u${sfx}`];
  const tun = `cvc${randomSuffix(5)}`;
  const psk = randomBytes(24).toString('base64');
  const tenantT = (esp: string | null, extraPeer = false): object => ({
    tenant_id: T,
    tunnels:
      esp === null
        ? []
        : [
            {
              id: 'branch',
              type: 'ipsec',
              local_id: 'vr.live.cvlan',
              remote_id: 'legacy.live.cvlan',
              remote_address: '192.168.44.2',
              auth: { method: 'psk', psk },
              local_subnets: ['10.30.0.0/24'],
              remote_subnets: ['10.40.0.0/24'],
              proposals: { ike: ['aes256gcm16-prfsha256-ecp256'], esp: [esp] },
            },
          ],
    wireguard: { listen_port: 51820, private_key: vrKeys.privateKey },
    wireguard_peers: [
      { name: 'agent', public_key: agentKeys.publicKey, allowed_ips: [`${AGENT}/32`] },
      ...(extraPeer ? [{ name: 'other', public_key: otherKeys.publicKey, allowed_ips: ['10.20.0.77/32'] }] : []),
    ],
    tun: [{ name: tun, netns: nsC, addresses: [`${CLOUD}/24`], subnets: ['10.30.0.0/24'] }],
  });
  const tenantU = (key = uKeys.privateKey): object => ({ tenant_id: U, wireguard: { listen_port: 51830, private_key: key }, wireguard_peers: [{ name: 'agent', public_key: agentKeys.publicKey, allowed_ips: [`${AGENT}/32`] }] });
  const doc = (...tenants: object[]): object => ({ vrouter_id: 'vr1', tenants });

  const controller = await startController(lab, nsV, join(lab.dir, 'controller'));
  await setDocument(lab, nsV, controller, doc(tenantT(null)));
  const vr = await managedVrouter(lab, nsV, controller, ['[network]', 'listen_address = "192.168.44.1"']);
  t.equal(await udpListening(nsV, 500), '', 'no tunnel, no charon: nothing listens on UDP 500');
  const agent = await wireguardGo(lab, nsA, {
    keys: agentKeys,
    addresses: [`${AGENT}/24`],
    peers: [{ publicKey: vrKeys.publicKey, endpoint: '192.168.42.1:51820', allowedIps: ['10.30.0.0/24'], persistentKeepalive: 2 }],
    routes: ['10.30.0.0/24'],
  });
  t.ok((await waitForPing(nsA, CLOUD, 20_000, AGENT)).received > 0, 'agent → cloud through the vrouter');
  await iperfServer(lab, nsC, { bind: CLOUD });
  const flow = { agentNs: nsA, agentIf: agent.name, destNs: nsC, dest: CLOUD, seconds: 7 };
  const legacy = await strongswanPeer(lab, nsL, {
    localAddr: '192.168.44.2',
    // We initiate, from whichever listen address is configured.
    remoteAddr: '%any',
    localId: 'legacy.live.cvlan',
    remoteId: 'vr.live.cvlan',
    localTs: ['10.40.0.0/24'],
    remoteTs: ['10.30.0.0/24'],
    auth: { method: 'psk', psk },
    ikeProposals: 'aes256gcm16-prfsha256-ecp256',
    espProposals: 'aes256gcm16,aes128gcm16',
  });

  // Generation 2: the first tunnel (and a new peer) while UDP 500 is taken: the IPsec device
  // cannot open, nothing of generation 2 stays.
  const held = await holdUdp(lab, nsV, 500);
  t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes256gcm16', true))), 2);
  const refused = await statusUntil(nsV, controller, (s) => s.refused?.generation === 2);
  t.equal(refused.applied_generation, 1);
  t.match(refused.refused?.issues, [{ field: 'tenants[0].tunnels', reason: /the previous configuration was restored/ }], 'refused with the field of the failed step');
  t.same((await admin<{ peers: PeerView[] }>(vr.adminSock, '/v1/peers')).peers.map((p) => p.public_key), [agentKeys.publicKey], 'the new peer was not kept');
  await held.stop();
  t.equal(await udpListening(nsV, 500), '', 'and no IPsec device was left open');

  // Generation 3: the first tunnel, live: charon and the IPsec device start on demand.
  const first = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes256gcm16'))), 3);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 3 || s.refused?.generation === 3)).refused, null, 'generation 3 applied');
  });
  t.equal(first.byVrouter, 0, `UDP through the agent's tunnel while charon started: ${describeLoss(first)}`);
  t.not(await udpListening(nsV, 500), '', 'UDP 500 is open now');
  t.ok((await waitForPing(nsL, CLOUD, 30_000, LEGACY_LAN)).received > 0, 'legacy LAN → cloud through the new IPsec tunnel');
  t.match((await legacy.listSas()).raw, /ESP:AES_GCM_16-256/, 'the CHILD_SA uses AES-GCM-256');

  // Generation 4: the tunnel's ESP proposal changes; the agent's tunnel is untouched.
  const proposal = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes128gcm16'))), 4);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 4 || s.refused?.generation === 4)).refused, null, 'generation 4 applied');
  });
  t.equal(proposal.byVrouter, 0, `UDP through the agent's tunnel while the IPsec proposal changed: ${describeLoss(proposal)}`);
  t.ok((await waitForPing(nsL, CLOUD, 30_000, LEGACY_LAN)).received > 0, 'legacy LAN → cloud through the renegotiated tunnel');
  const sas = (await legacy.listSas()).raw;
  t.match(sas, /ESP:AES_GCM_16-128/, 'the CHILD_SA now uses AES-GCM-128');
  t.notMatch(sas, /ESP:AES_GCM_16-256/, 'and no CHILD_SA of the old proposal is left');

  const routes = async (): Promise<string> => (await run(tools.ip, ['-n', nsV, 'route', 'show'], {})).stdout;
  t.match(await routes(), new RegExp(`${AGENT.replace(/\./g, '\\.')} dev wg-`), 'one tenant: the namespace routes the peer into its device');
  t.match(await routes(), /10\.40\.0\.0\/24 dev ipsec-/, 'and the remote subnet into the IPsec device');

  // Generation 5: a second tenant whose port is taken: the mode change is rolled back too.
  const heldU = await holdUdp(lab, nsV, 51830);
  t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes128gcm16'), tenantU())), 5);
  const refusedU = await statusUntil(nsV, controller, (s) => s.refused?.generation === 5);
  t.match(refusedU.refused?.issues, [{ field: 'tenants[1]', reason: /CVLAN_ERR_ADDR_IN_USE.*the previous configuration was restored/ }]);
  t.match(await routes(), /10\.40\.0\.0\/24 dev ipsec-/, 'rolled back: the namespace routes again');
  t.match(await routes(), new RegExp(`${AGENT.replace(/\./g, '\\.')} dev wg-`));
  await heldU.stop();

  // Generation 6: one tenant → two, live.
  const two = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes128gcm16'), tenantU())), 6);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 6 || s.refused?.generation === 6)).refused, null, 'generation 6 applied');
  });
  t.equal(two.byVrouter, 0, `UDP through the agent's tunnel while a second tenant came: ${describeLoss(two)}`);
  const shared = await routes();
  t.notMatch(shared, /dev wg-|dev ipsec-/, 'several tenants: the namespace routes into no device');
  t.same((await admin<{ tenants: { id: string }[] }>(vr.adminSock, '/v1/tenants')).tenants.map((x) => x.id).sort(), [T, U].sort());
  t.equal((await ping(nsL, CLOUD, { count: 3, source: LEGACY_LAN })).received, 3, 'the IPsec tunnel still reaches the cloud (the workers hand off per tenant)');

  // Generation 7: the second tenant's WireGuard key is rotated (its interface is replaced).
  const uKey = async (): Promise<string> => (await run(tools.wg, ['show', `wg-${U}`, 'public-key'], { ns: nsV })).stdout.trim();
  t.equal(await uKey(), uKeys.publicKey);
  const rotated = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes128gcm16'), tenantU(uKeys2.privateKey))), 7);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 7 || s.refused?.generation === 7)).refused, null, 'generation 7 applied');
  });
  t.equal(rotated.byVrouter, 0, `UDP through the agent's tunnel while another tenant's key was rotated: ${describeLoss(rotated)}`);
  t.equal(await uKey(), uKeys2.publicKey, "the second tenant's interface has the new key");

  // Generation 8: back to one tenant: the routes return.
  const one = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT('aes128gcm16'))), 8);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 8 || s.refused?.generation === 8)).refused, null, 'generation 8 applied');
  });
  t.equal(one.byVrouter, 0, `UDP through the agent's tunnel while the second tenant went: ${describeLoss(one)}`);
  t.match(await routes(), new RegExp(`${AGENT.replace(/\./g, '\\.')} dev wg-`), 'one tenant again: the peer is routed');
  t.match(await routes(), /10\.40\.0\.0\/24 dev ipsec-/, 'and the remote subnet');

  // SIGHUP with another [network] listen_address: the IPsec service reopens there and the
  // tunnel is negotiated again from it; WireGuard is untouched.
  // First an address this host does not have: the IPsec service cannot reopen there, the old one
  // is opened again with its tunnel, and the reload is refused naming the field.
  const toml = readFileSync(vr.toml, 'utf8');
  writeFileSync(vr.toml, toml.replace('listen_address = "192.168.44.1"', 'listen_address = "192.168.44.9"'));
  vr.process.signal('SIGHUP');
  await vr.process.waitReady({ line: /"event":"config_refused".*network\.listen_address.*the previous configuration was restored/, timeoutMs: 30_000 });
  t.match(await udpListening(nsV, 500), /192\.168\.44\.1:500/, 'rolled back: IKE listens on the old address again');
  t.ok((await waitForPing(nsL, CLOUD, 30_000, LEGACY_LAN)).received > 0, 'and the tunnel is back');
  await lab.addAddress(nsV, vrToLegacy.name, '192.168.44.3/24');
  writeFileSync(vr.toml, toml.replace('listen_address = "192.168.44.1"', 'listen_address = "192.168.44.3"'));
  const moved = await udpAcross(flow, async () => {
    vr.process.signal('SIGHUP');
    await vr.process.waitReady({ line: /"event":"local_settings_applied"/, timeoutMs: 30_000 });
  });
  t.equal(moved.byVrouter, 0, `UDP through the agent's tunnel while the IPsec listen address moved: ${describeLoss(moved)}`);
  t.match(await udpListening(nsV, 500), /192\.168\.44\.3:500/, 'IKE listens on the new address');
  t.notMatch(await udpListening(nsV, 500), /192\.168\.44\.1:500/, 'and no longer on the old one');
  t.ok((await waitForPing(nsL, CLOUD, 30_000, LEGACY_LAN)).received > 0, 'legacy LAN → cloud through the tunnel from the new address');
  t.match((await legacy.listSas()).raw, /remote 'vr\.live\.cvlan' @ 192\.168\.44\.3/, 'the IKE_SA is with the new address');

  // Generation 9: the last tunnel goes: charon stops and UDP 500 closes.
  const last = await udpAcross(flow, async () => {
    t.equal(await setDocument(lab, nsV, controller, doc(tenantT(null))), 9);
    t.equal((await statusUntil(nsV, controller, (s) => s.applied_generation === 9 || s.refused?.generation === 9)).refused, null, 'generation 9 applied');
  });
  t.equal(last.byVrouter, 0, `UDP through the agent's tunnel while charon stopped: ${describeLoss(last)}`);
  t.equal(await udpListening(nsV, 500), '', 'UDP 500 closed');
  t.same((await admin<{ tunnels: TunnelView[] }>(vr.adminSock, '/v1/tunnels')).tunnels, []);
  t.notMatch(await routes(), /dev ipsec-/, 'the IPsec device is gone');
  t.ok(vr.process.exitStatus === undefined, 'the same vrouter process throughout');
  await closeLab(t, lab);
});
