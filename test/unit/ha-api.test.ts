// The HA views: /v1/ha, the standby's /readyz, the HA metrics and `vrouterctl ha`.
import t from 'tap';
import { join } from 'node:path';
import { startAdminServer } from '../../src/api/server.js';
import { SnapshotStateSource, type HaView } from '../../src/api/state.js';
import { main, type CtlIo } from '../../src/cli/vrouterctl.js';
import { VrouterMetrics } from '../../src/metrics/registry.js';
import { request, sampleSnapshot, tempSocketDir } from './api-fixture.js';

const standby: HaView = {
  node_id: 2,
  role: 'standby',
  vrrp_state: 'BACKUP',
  fenced: false,
  fence_reason: null,
  priority: 100,
  preempt: false,
  vips: ['192.0.2.10/24'],
  peer: '10.0.0.2',
  generation: 4,
  peer_connected: true,
  peer_role: 'active',
  peer_generation: 4,
  last_sync_age_ms: 40,
  synced_wireguard_sessions: 3,
  synced_esp_sas: 4,
  sync_frames_sent: 10,
  sync_frames_received: 900,
  sync_rejected_forged: 1,
  sync_rejected_replayed: 2,
  lease_exhausted: 0,
  takeovers: 0,
  generation_refusals: 0,
  keepalived_pid: 4242,
  keepalived_starts: 1,
  charon_ha: true,
  sync_channel: true,
  role_since: '2026-12-05T02:00:00.000Z',
};

class HaSource extends SnapshotStateSource {
  view: HaView | null = standby;
  ha(): HaView | null {
    return this.view;
  }
}

const source = new HaSource(sampleSnapshot());
const dir = tempSocketDir();
const socketPath = join(dir, 'admin.sock');
const server = await startAdminServer({ source, socketPath });
t.teardown(() => server.close());

async function ctl(argv: string[]) {
  let out = '';
  let err = '';
  const io: CtlIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    stdin: (async function* () {})(),
    env: {},
  };
  const code = await main(['--socket', socketPath, ...argv], io);
  return { code, out, err };
}

t.test('/v1/ha and the standby /readyz', async (t) => {
  source.view = standby;
  const r = await request({ socketPath }, '/v1/ha');
  t.equal(r.status, 200);
  t.same(JSON.parse(r.body), { ha: standby });
  const ready = await request({ socketPath }, '/readyz');
  t.equal(ready.status, 503, 'a standby is not ready for traffic');
  t.match(JSON.parse(ready.body), { live: true, ready: false, reasons: [/HA standby \(passive; VRRP BACKUP\)/] });
  t.equal((await request({ socketPath }, '/healthz')).status, 200, 'but it is healthy');

  source.view = { ...standby, role: 'standby', vrrp_state: 'FAULT', fenced: true, fence_reason: 'generation-mismatch' };
  t.match(JSON.parse((await request({ socketPath }, '/readyz')).body).reasons, [/fenced: generation-mismatch/]);

  source.view = { ...standby, role: 'active', vrrp_state: 'MASTER' };
  t.equal((await request({ socketPath }, '/readyz')).status, 200, 'the active node is ready');

  source.view = null;
  t.same(JSON.parse((await request({ socketPath }, '/v1/ha')).body), { ha: null });
  t.equal((await request({ socketPath }, '/readyz')).status, 200, 'no [ha]: ready as before');
});

t.test('metrics', async (t) => {
  source.view = { ...standby, fenced: true, fence_reason: 'peer-active', takeovers: 2 };
  const text = await new VrouterMetrics(source, { processMetrics: false }).scrape();
  t.match(text, /\ncvlan_vrouter_ha_active\{node="2"\} 0\n/);
  t.match(text, /\ncvlan_vrouter_ha_fenced\{node="2",reason="peer-active"\} 1\n/);
  t.match(text, /\ncvlan_vrouter_ha_fenced\{node="2",reason="generation-mismatch"\} 0\n/);
  t.match(text, /\ncvlan_vrouter_ha_last_sync_age_seconds\{node="2"\} 0\.04\n/);
  t.match(text, /\ncvlan_vrouter_ha_synced\{node="2",kind="wireguard"\} 3\n/);
  t.match(text, /\ncvlan_vrouter_ha_synced\{node="2",kind="esp"\} 4\n/);
  t.match(text, /\ncvlan_vrouter_ha_takeovers_total\{node="2"\} 2\n/);
  t.match(text, /\ncvlan_vrouter_ha_sync_rejected_total\{node="2",reason="forged"\} 1\n/);
  t.match(text, /\ncvlan_vrouter_ha_sync_rejected_total\{node="2",reason="replayed"\} 2\n/);
  source.view = null;
  const none = await new VrouterMetrics(source, { processMetrics: false }).scrape();
  t.notMatch(none, /\ncvlan_vrouter_ha_\w+\{/, 'no [ha]: no HA samples');
});

t.test('vrouterctl ha', async (t) => {
  source.view = standby;
  const table = await ctl(['ha']);
  t.equal(table.code, 0, table.err);
  t.match(table.out, /^role {8}standby \(passive: sends nothing\) since 2026-12-05T02:00:00\.000Z\n/);
  t.match(table.out, /\npeer {8}10\.0\.0\.2 connected, active\n/);
  t.match(table.out, /\nsynced {6}3 WireGuard sessions, 4 ESP SAs\n/);
  const json = await ctl(['ha', '--json']);
  t.same(JSON.parse(json.out), { ha: standby });
  source.view = null;
  t.match((await ctl(['ha'])).out, /HA is not configured/);
});
