/**
 * `cvlan-vrouter demo`: the product on its embedded default configuration, in three network
 * namespaces of this machine, with peers nobody here wrote:
 *
 *   legacy (strongSwan charon + kernel-libipsec, LAN 10.10.0.0/24)
 *      ⇅ IKEv2 + ESP-in-UDP, 192.0.2.0/24
 *   vrouter (`cvlan-vrouter run` on src/config/default-demo.json)
 *      ⇅ WireGuard, 198.51.100.0/24
 *   agent (wireguard-go, 10.20.0.2)
 *
 * It sends real traffic both ways (ping, iperf3), prints what happened (tunnels, SAs, handshakes,
 * bytes, from the vrouter's own admin API) and tears everything down, also on failure or Ctrl-C.
 * The namespaces, processes and cleanup are the test suite's lab (test/harness/): the demo is
 * the scenario the tests check, run for a person to watch.
 */
import { randomBytes } from 'node:crypto';
import { adminGet } from '../api/client.js';
import { demoDefaultDocument, substitutePlaceholders } from '../config/load.js';
import { Lab } from '../../test/harness/lab.js';
import { CVLAN_CLI } from '../../test/harness/cvlan.js';
import type { LabProcess } from '../../test/harness/process.js';
import { tools, missingPrerequisites } from '../../test/harness/tools.js';
import { strongswanPeer, type StrongswanPeer } from '../../test/harness/strongswan.js';
import { wireguardGo, genKeyPair, wgShow, type WgInterface } from '../../test/harness/wireguard.js';
import { ping, waitForPing, iperfServer, iperfClient, type IperfResult } from '../../test/harness/ping.js';
import type { PeerView, TunnelView } from '../api/state.js';
import { parseCommand } from './args.js';


export const HELP = `usage: cvlan-vrouter demo

Builds three network namespaces (a strongSwan legacy router, cvlan-vrouter on the embedded
default configuration, a wireguard-go agent), sends traffic both ways, prints what happened
and tears everything down. Needs root.

options:
  -h, --help   this text
`;

export async function main(argv: string[]): Promise<number> {
  if (!parseCommand({ name: 'cvlan-vrouter demo', help: HELP, options: {} }, argv)) return 0;
  return await demo();
}

export const DEMO_NET = {
  legacy: '192.0.2.1',
  vrouterLegacy: '192.0.2.2',
  vrouterAgent: '198.51.100.1',
  agent: '198.51.100.2',
  legacyLan: '10.10.0.1',
  agentInner: '10.20.0.2',
};

type Say = (line: string) => void;

const mbit = (r: IperfResult): string => `${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`;
const bytes = (n: number): string => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export interface DemoTopology {
  nsL: string;
  nsR: string;
  nsA: string;
  daemon: LabProcess;
  legacy: StrongswanPeer;
  agent: WgInterface;
  /** The vrouter's admin socket, its configuration files and its WireGuard public key. */
  admin: string;
  config: string;
  local: string;
  vrouterPublicKey: string;
}

/** Builds the demo's three namespaces and starts the vrouter, the legacy router and the agent in them. */
export async function startDemoTopology(lab: Lab, say: Say = () => undefined, opts: { logLevel?: string } = {}): Promise<DemoTopology> {
  say('== topology: legacy router ⇄ (IPsec) ⇄ cvlan-vrouter ⇄ (WireGuard) ⇄ agent');
  const [nsL, nsR, nsA] = [await lab.namespace('legacy'), await lab.namespace('vrouter'), await lab.namespace('agent')];
  await lab.veth({ ns: nsL, addresses: [`${DEMO_NET.legacy}/24`] }, { ns: nsR, addresses: [`${DEMO_NET.vrouterLegacy}/24`] });
  await lab.veth({ ns: nsR, addresses: [`${DEMO_NET.vrouterAgent}/24`] }, { ns: nsA, addresses: [`${DEMO_NET.agent}/24`] });
  await lab.addAddress(nsL, 'lo', `${DEMO_NET.legacyLan}/32`);

  const psk = randomBytes(24).toString('base64');
  const [vr, agentKeys] = [await genKeyPair(), await genKeyPair()];
  const doc = substitutePlaceholders(demoDefaultDocument(), {
    DEMO_PSK: psk,
    VROUTER_WG_PRIVATE_KEY: vr.privateKey,
    AGENT_PUBLIC_KEY: agentKeys.publicKey,
  });
  const config = lab.writeFile('vrouter.json', JSON.stringify(doc, null, 2));
  const admin = `${lab.dir}/admin.sock`;
  const local = lab.writeFile(
    'vrouter.toml',
    `[network]\nlisten_address = "${DEMO_NET.vrouterLegacy}"\n\n[performance]\nworker_threads = 2\n\n[admin]\nsocket = "${admin}"\n\n[state]\ndir = "${lab.dir}/state"\n`,
  );

  say(`== starting cvlan-vrouter in ${nsR}`);
  const daemon = lab.spawn('cvlan-vrouter run', tools.node, [CVLAN_CLI, 'run', '--config', config, '--local', local, '--runtime-dir', `${lab.dir}/run`], {
    ns: nsR,
    env: { CVLAN_LOG_LEVEL: opts.logLevel ?? 'warn' },
  });
  await daemon.waitReady({ line: /"event":"ready"/, timeoutMs: 30_000 });

  say(`== starting the legacy router (strongSwan charon, kernel-libipsec) in ${nsL}`);
  const legacy = await strongswanPeer(lab, nsL, {
    localAddr: DEMO_NET.legacy,
    remoteAddr: DEMO_NET.vrouterLegacy,
    localId: 'legacy.demo.cvlan',
    remoteId: 'vrouter.demo.cvlan',
    localTs: ['10.10.0.0/24'],
    remoteTs: ['10.20.0.0/24'],
    auth: { method: 'psk', psk },
    ikeProposals: 'aes256gcm16-prfsha256-x25519',
    espProposals: 'aes256gcm16',
    forceEncap: true,
  });
  await legacy.initiate(20);
  say('   IKE_SA and CHILD_SA established (the legacy router initiated)');

  say(`== starting the WireGuard agent (wireguard-go) in ${nsA}`);
  const agent = await wireguardGo(lab, nsA, {
    keys: agentKeys,
    addresses: [`${DEMO_NET.agentInner}/24`],
    peers: [{ publicKey: vr.publicKey, endpoint: `${DEMO_NET.vrouterAgent}:51820`, allowedIps: ['10.10.0.0/24'], persistentKeepalive: 25 }],
    routes: ['10.10.0.0/24'],
  });
  return { nsL, nsR, nsA, daemon, legacy, agent, admin, config, local, vrouterPublicKey: vr.publicKey };
}

export async function demo(say: Say = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const missing = missingPrerequisites('charon', 'swanctl', 'wg', 'wireguardGo', 'iperf3');
  if (missing) throw new Error(`the demo needs ${missing}; run scripts/setup.sh`);
  if (process.getuid?.() !== 0) throw new Error('the demo creates network namespaces: run it as root');

  const lab = Lab.create({ label: 'demo' });
  const interrupted = (): void => {
    say('interrupted: tearing down');
    void lab.teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const { nsL, nsA, daemon, legacy, agent, admin } = await startDemoTopology(lab, say);
    say('== traffic');
    const first = await waitForPing(nsA, DEMO_NET.legacyLan, 20_000);
    say(`   agent ${DEMO_NET.agentInner} → legacy LAN ${DEMO_NET.legacyLan}: first reply after ${first.transmitted} probes`);
    const back = await ping(nsL, DEMO_NET.agentInner, { count: 5, interval: 0.2, source: DEMO_NET.legacyLan });
    say(`   legacy LAN ${DEMO_NET.legacyLan} → agent ${DEMO_NET.agentInner}: ${back.received}/${back.transmitted} replies`);
    if (back.received === 0) throw new Error('no reply from the agent to the legacy LAN');
    await iperfServer(lab, nsL, { bind: DEMO_NET.legacyLan });
    const up = await iperfClient(nsA, DEMO_NET.legacyLan, { duration: 3 });
    const down = await iperfClient(nsA, DEMO_NET.legacyLan, { duration: 3, reverse: true });
    say(`   iperf3 agent → legacy: ${mbit(up)}; legacy → agent: ${mbit(down)} (TCP, WireGuard ⇄ ESP through the vrouter)`);

    say('== what the vrouter reports (admin API on its unix socket)');
    const tunnels = JSON.parse((await adminGet({ kind: 'unix', socketPath: admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] };
    for (const t of tunnels.tunnels) {
      say(`   ipsec ${t.id} (${t.remote_id}, ${t.auth_method}): ${t.state}; IKE ${t.ike_sa?.algorithms.encryption ?? '-'} ${t.ike_sa?.algorithms.dh_group ?? ''}`);
      for (const c of t.child_sas) {
        say(`     CHILD_SA ${c.name} spi in ${c.spi_in} out ${c.spi_out} ${c.algorithms.encryption}: in ${bytes(c.bytes_in)} / ${c.packets_in} pkts, out ${bytes(c.bytes_out)} / ${c.packets_out} pkts`);
      }
    }
    const peers = JSON.parse((await adminGet({ kind: 'unix', socketPath: admin }, '/v1/peers')).body) as { peers: PeerView[] };
    for (const p of peers.peers) {
      say(`   wireguard peer ${p.public_key.slice(0, 12)}… at ${p.endpoint ?? '-'}: handshake ${p.latest_handshake ?? 'never'}, rx ${bytes(p.rx_bytes)}, tx ${bytes(p.tx_bytes)}`);
    }
    const a = await wgShow(nsA, agent.name);
    say(`   agent's own view (wg show): rx ${bytes(a.peers[0]?.rxBytes ?? 0)}, tx ${bytes(a.peers[0]?.txBytes ?? 0)}`);
    const sas = await legacy.listSas();
    say(`   legacy router's view (swanctl --list-sas): IKE ${sas.ike.map((s) => s.state).join(',')}; CHILD ${sas.child.map((s) => s.state).join(',')}`);

    say('== stopping cvlan-vrouter (SIGTERM: tunnels closed)');
    const st = await daemon.stop(10_000);
    say(`   exited with ${st.code ?? st.signal}`);
    say('demo ok');
    return 0;
  } catch (e) {
    say(`demo failed: ${(e as Error).message}`);
    for (const p of lab.processes) {
      const out = p.lastOutput(15);
      if (out) say(`--- last output of ${p.name}:\n${out}`);
    }
    return 1;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    const report = await lab.teardown();
    say(`== torn down: ${report.errors.length === 0 ? 'namespaces, interfaces and processes removed' : `with errors: ${report.errors.join('; ')}`}`);
  }
}
