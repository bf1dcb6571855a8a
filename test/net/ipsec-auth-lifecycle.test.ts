// IKE authentication and SA lifecycle of cvlan-vrouter's IPsec against strongSwan charon with
// kernel-libipsec: X.509 certificates in both initiator roles, EAP-MSCHAPv2 with us as EAP server
// and as EAP client (a wrong EAP password refused and logged), CHILD_SA and IKE_SA rekeys under
// iperf3 traffic started by either side without a stall, and DPD noticing a dead peer.
import t, { type Test } from 'tap';
import { adminGet } from '../../src/api/client.js';
import { useLab, closeLab } from '../harness/tap.js';
import { twoHosts } from '../harness/topology.js';
import { site, tunnels, waitUp, OURS, LEGACY, type Site } from '../harness/ipsec-site.js';
import { cvlanTestbedMissing } from '../harness/cvlan.js';
import { missingPrerequisites } from '../harness/tools.js';
import { sleep } from '../harness/exec.js';
import { ping, waitForPing, iperfServer, iperfClient } from '../harness/ping.js';

const skip = cvlanTestbedMissing() ?? missingPrerequisites('charon', 'swanctl', 'pki', 'iperf3');

async function trafficBothWays(t: Test, _s: Site, h: { a: string; b: string }): Promise<void> {
  t.ok((await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan)).received > 0, 'ours → legacy');
  t.equal((await ping(h.b, OURS.lan, { count: 3, source: LEGACY.lan })).received, 3, 'legacy → ours');
}

for (const weInitiate of [true, false]) {
  t.test(`X.509 certificates, ${weInitiate ? 'we initiate' : 'the legacy router initiates'}`, { skip }, async (t) => {
    const lab = useLab(t, { label: 'cert' });
    const h = await twoHosts(lab);
    const s = await site(lab, { esp: 'aes256gcm16', weInitiate, auth: 'pubkey', ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
    const view = await waitUp(s);
    t.equal(view.auth_method, 'pubkey');
    await trafficBothWays(t, s, h);
    await closeLab(t, lab);
  });
}

for (const role of ['server', 'client'] as const) {
  t.test(`EAP-MSCHAPv2, we are the EAP ${role}`, { skip }, async (t) => {
    const lab = useLab(t, { label: 'eap' });
    const h = await twoHosts(lab);
    const s = await site(lab, { esp: 'aes256gcm16', weInitiate: role === 'client', auth: `eap-${role}`, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
    const view = await waitUp(s);
    t.equal(view.auth_method, 'eap');
    await trafficBothWays(t, s, h);
    await closeLab(t, lab);
  });
}

t.test('EAP-MSCHAPv2: a client whose EAP identity is its IKE identity stays up', { skip }, async (t) => {
  // charon's VICI leaves remote-eap-id out when it equals remote-id; the login must still count.
  const lab = useLab(t, { label: 'eapself' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, auth: 'eap-server', eapUser: LEGACY.id, ours: [h.a, h.addrA], legacy: [h.b, h.addrB] });
  await waitUp(s);
  await trafficBothWays(t, s, h);
  await sleep(3000);
  t.equal((await tunnels(s))[0]?.state, 'up', 'still up seconds later: not torn down');
  t.notOk(s.ours.process.output().some((l) => /is not the tunnel's user/.test(l.line)), 'no auth_failure for the login');
  await closeLab(t, lab);
});

/** A JSON log line written after `t` (ms since the epoch). */
function after(line: string, t: number): boolean {
  const m = /"time":"([^"]+)"/.exec(line);
  return m !== null && Date.parse(m[1]!) >= t;
}

/** Samples the tunnel view while `during` runs: every CHILD_SA SPI pair seen. */
async function watchSas(s: Site, during: Promise<unknown>): Promise<{ childSpis: Set<string> }> {
  const childSpis = new Set<string>();
  let done = false;
  void during.finally(() => (done = true)).catch(() => undefined);
  while (!done) {
    for (const v of await tunnels(s)) {
      for (const c of v.child_sas) childSpis.add(`${c.spi_in}/${c.spi_out}`);
    }
    await sleep(500);
  }
  return { childSpis };
}

for (const who of ['we', 'the legacy router'] as const) {
  t.test(`CHILD_SA and IKE_SA rekeys started by ${who}, under iperf3: no stall`, { skip }, async (t) => {
    const lab = useLab(t, { label: 'rekey' });
    const h = await twoHosts(lab);
    const ours = who === 'we';
    const s = await site(lab, {
      esp: 'aes256gcm16',
      weInitiate: true,
      ours: [h.a, h.addrA],
      legacy: [h.b, h.addrB],
      // The other side's timers stay at charon's defaults (hours), so who rekeys is known.
      ...(ours ? { tunnel: { rekey: { child_seconds: 10, ike_seconds: 16 } } } : { legacyRekey: { child: '10s', ike: '16s' } }),
    });
    await waitUp(s);
    await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
    await iperfServer(lab, h.b, { bind: LEGACY.lan });
    const flow = iperfClient(h.a, LEGACY.lan, { duration: 26 });
    const seen = await watchSas(s, flow);
    const r = await flow;
    const intervals = ((r.json as { intervals?: Array<{ sum: { bits_per_second: number } }> }).intervals ?? []).map((i) => i.sum.bits_per_second);
    const sorted = [...intervals].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const worst = sorted[0] ?? 0;
    t.ok(intervals.length >= 25, `${intervals.length} one-second intervals`);
    t.ok(worst > median * 0.1, `slowest second ${(worst / 1e6).toFixed(0)} Mbit/s vs median ${(median / 1e6).toFixed(0)} Mbit/s: no stall`, { intervals });
    t.ok(seen.childSpis.size >= 3, `${seen.childSpis.size} CHILD_SA SPI pairs seen (≥ 2 rekeys)`, { spis: [...seen.childSpis] });
    const stats = JSON.parse((await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/v1/stats')).body) as { child_rekeys_total: number; ike_rekeys_total: number };
    t.ok(stats.child_rekeys_total >= 2, `child_rekeys_total ${stats.child_rekeys_total}`);
    t.ok(stats.ike_rekeys_total >= 1, `ike_rekeys_total ${stats.ike_rekeys_total}`);
    t.equal((await ping(h.a, LEGACY.lan, { count: 3, source: OURS.lan })).received, 3, 'traffic after the rekeys');
    const drops = JSON.parse((await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/v1/drops')).body) as { drops: Array<{ reason: string; count: number }> };
    const unknownSpi = drops.drops.find((d) => d.reason === 'unknown_spi')?.count ?? 0;
    t.ok(unknownSpi <= 4, `${unknownSpi} packets for an SA already deleted`);
    await closeLab(t, lab);
  });
}

t.test('DPD notices a dead peer: tunnel down logged, SAs removed, re-initiation under way', { skip }, async (t) => {
  const lab = useLab(t, { label: 'dpd' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB], tunnel: { dpd_delay: 2 } });
  await waitUp(s);
  await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
  const killedAt = Date.now();
  s.legacy.process.signal('SIGKILL');
  // DPD after 2 s idle, then 3 retransmits (2 s × 1.8^n): the peer is declared dead within ~30 s.
  await s.ours.process.waitReady({ line: (l) => after(l, killedAt) && /"event":"tunnel_down"/.test(l) && /"tunnel":"legacy"/.test(l), timeoutMs: 45_000 });
  t.pass(`tunnel_down logged ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the peer died`);
  const end = Date.now() + 5000;
  let view = (await tunnels(s))[0];
  while (view && view.child_sas.length > 0 && Date.now() < end) {
    await sleep(250);
    view = (await tunnels(s))[0];
  }
  t.same(view?.child_sas ?? [], [], 'CHILD_SAs removed from the data plane');
  t.not(view?.state, 'up', `tunnel state ${view?.state ?? 'absent'}`);
  await closeLab(t, lab);
});

t.test("charon's lines: DPD's routine ones only at trace, the IKE subsystem's others at debug", { skip }, async (t) => {
  // The cvlan plugin writes the IKE lines (native/strongswan/cvlan_ike_log.c) and leaves out a
  // DPD request sent; at trace charon's own logger writes every line. The same idle tunnel with
  // 1 s DPD under both levels: at trace the requests show, so the check below can fail.
  const charonLines = (s: Site): string[] =>
    s.ours.process.output().flatMap((l) => {
      const m = /"charon":"((?:[^"\\]|\\.)*)"/.exec(l.line);
      return m ? [m[1]!] : [];
    });
  for (const level of ['trace', 'debug'] as const) {
    const lab = useLab(t, { label: `dpd${level}` });
    const h = await twoHosts(lab);
    const s = await site(lab, { esp: 'aes256gcm16', weInitiate: true, ours: [h.a, h.addrA], legacy: [h.b, h.addrB], tunnel: { dpd_delay: 1 }, logLevel: level });
    await waitUp(s);
    await waitForPing(h.a, LEGACY.lan, 15_000, OURS.lan);
    await sleep(6000);
    const lines = charonLines(s);
    const dpd = lines.filter((l) => /\[IKE\] <legacy\|\d+> sending DPD request$/.test(l)).length;
    t.ok(lines.some((l) => /\[IKE\] <legacy\|\d+> IKE_SA legacy\[\d+\] established/.test(l)), `${level}: the IKE_SA's establishment is among charon's lines`);
    if (level === 'trace') t.ok(dpd >= 2, `trace: ${dpd} DPD requests logged`);
    else t.equal(dpd, 0, 'debug: no DPD request line');
    t.equal((await tunnels(s))[0]?.state, 'up', `${level}: the tunnel stays up`);
    await closeLab(t, lab);
  }
});

t.test('EAP: a wrong password is refused and logged as auth_failure', { skip }, async (t) => {
  const lab = useLab(t, { label: 'eapbad' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, auth: 'eap-server', ours: [h.a, h.addrA], legacy: [h.b, h.addrB], legacyEapSecret: 'not-the-password', initiate: false });
  await t.rejects(s.legacy.initiate(10), 'the legacy router cannot establish the tunnel');
  await s.ours.process.waitReady({ line: /"event":"auth_failure".*"tunnel":"legacy"/, timeoutMs: 10_000 });
  t.pass('auth_failure logged');
  t.not((await tunnels(s))[0]?.state, 'up', 'no tunnel');
  await closeLab(t, lab);
});

t.test('a peer that refuses our authentication after we established: auth_failure logged', { skip }, async (t) => {
  // The legacy router (initiator) authenticates with the PSK but requires a certificate of us:
  // our side, the responder, established the IKE_SA when it sent its AUTH, and learns of the
  // refusal only from a later INFORMATIONAL with AUTHENTICATION_FAILED (charon raises an alert;
  // the plugin names it in an IKE line, since the ENC lines that show the message are off).
  const lab = useLab(t, { label: 'lateauth' });
  const h = await twoHosts(lab);
  const s = await site(lab, { esp: 'aes256gcm16', weInitiate: false, ours: [h.a, h.addrA], legacy: [h.b, h.addrB], legacyRemoteAuth: 'pubkey', initiate: false });
  await t.rejects(s.legacy.initiate(10), 'the legacy router refuses us');
  const line = await s.ours.process.waitReady({ line: /"event":"auth_failure".*"tunnel":"legacy"/, timeoutMs: 10_000 });
  t.match(line, /the peer refused our authentication/, 'logged with the reason');
  t.notOk(s.ours.process.output().some((l) => /\[ENC\]/.test(l.line)), 'no ENC lines at info');
  let view = (await tunnels(s))[0];
  for (let i = 0; i < 40 && view?.state === 'up'; i++) {
    await sleep(250);
    view = (await tunnels(s))[0];
  }
  t.not(view?.state, 'up', 'no tunnel');
  await closeLab(t, lab);
});

t.test('EAP: a login as another tunnel\'s user is torn down and logged', { skip }, async (t) => {
  const lab = useLab(t, { label: 'eapuser' });
  const h = await twoHosts(lab);
  const otherSecret = 'other-site-password-1234';
  const s = await site(lab, {
    esp: 'aes256gcm16',
    weInitiate: false,
    auth: 'eap-server',
    ours: [h.a, h.addrA],
    legacy: [h.b, h.addrB],
    // The legacy router presents its own IKE identity but logs in as the user of another tunnel.
    legacyEapLogin: { identity: 'other-site', secret: otherSecret },
    moreTunnels: (auth) => [
      {
        id: 'other',
        type: 'ipsec',
        local_id: OURS.id,
        remote_id: 'other.test.cvlan',
        auth: { ...auth, eap_identity: 'other-site', eap_secret: otherSecret },
        local_subnets: [OURS.net],
        remote_subnets: ['10.88.3.0/24'],
      },
    ],
    initiate: false,
  });
  await s.legacy.initiate(10).catch(() => undefined);
  await s.ours.process.waitReady({ line: /"event":"auth_failure".*"tunnel":"legacy".*is not the tunnel's user/, timeoutMs: 10_000 });
  t.pass('auth_failure logged for the wrong EAP user');
  const end = Date.now() + 10_000;
  let views = await tunnels(s);
  while (views.some((v) => v.ike_sa !== null) && Date.now() < end) {
    await sleep(250);
    views = await tunnels(s);
  }
  t.ok(views.every((v) => v.ike_sa === null && v.child_sas.length === 0), 'no IKE_SA or CHILD_SA left');
  t.not((await ping(h.b, OURS.lan, { count: 2, source: LEGACY.lan })).received, 2, 'no traffic');
  await closeLab(t, lab);
});
