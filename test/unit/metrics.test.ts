// /metrics content: each required name, with exactly its label names, from one counters() read.

import t from 'tap';
import { METRIC_LABELS, VrouterMetrics } from '../../src/metrics/registry.js';
import { SnapshotStateSource } from '../../src/api/state.js';
import { sampleSnapshot } from './api-fixture.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses exposition-format sample lines (label values here never contain `,` or `"`). */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const ty = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (ty) types.set(ty[1]!, ty[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const kv of m[2].split(',')) {
        const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="(.*)"$/.exec(kv);
        if (!l) throw new Error(`bad label ${kv}`);
        labels[l[1]!] = l[2]!;
      }
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

const find = (s: Sample[], name: string, labels: Record<string, string> = {}) =>
  s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

void t.test('each metric name with exactly the stated label names', async (t) => {
  const snap = sampleSnapshot();
  let calls = 0;
  class Counting extends SnapshotStateSource {
    override counters() {
      calls++;
      return super.counters();
    }
    clients() {
      return {
        clients: [{ tenant: 'acme', connection: 'ra-acme', user: 'alice', device: null, remote: '198.51.100.7', addresses: ['10.99.0.1'], established: 12, ike_id: 3 }],
        pools: [{ tenant: 'acme', pool: 'ra-acme-0', range: '10.99.0.0/24', size: 254, online: 1, offline: 2, leases: [] }],
        exhausted: { acme: 4 },
      };
    }
    bgp(tenant: string) {
      if (tenant !== 'acme') return null;
      const n = { address: '192.0.2.254', info: '', announced: 2, import_limit_hit: true, limited: 3, filtered: 1 };
      return {
        running: true,
        announced: ['10.20.0.0/24', '10.40.0.0/16'],
        neighbors: [
          { ...n, name: 'vpc', state: 'Established', learned: ['10.50.1.0/24'] },
          { ...n, name: 'lan', state: 'Active', learned: [] },
        ],
      };
    }
    ha() {
      return {
        node_id: 1, role: 'active' as const, vrrp_state: 'MASTER' as const, fenced: false, fence_reason: null, priority: 150, preempt: false,
        vips: ['192.0.2.10/24'], peer: '10.0.0.3', generation: 1, peer_connected: true, peer_role: 'standby' as const, peer_generation: 1,
        last_sync_age_ms: 20, synced_wireguard_sessions: 0, synced_esp_sas: 0, sync_frames_sent: 5, sync_frames_received: 5,
        sync_rejected_forged: 0, sync_rejected_replayed: 0, lease_exhausted: 0, takeovers: 1, generation_refusals: 0,
        keepalived_pid: 10, keepalived_starts: 1, charon_ha: true, sync_channel: true, role_since: '2026-12-05T00:00:00.000Z',
      };
    }
  }
  const m = new VrouterMetrics(new Counting(snap));
  const { samples, types } = parse(await m.scrape());
  t.equal(calls, 1, 'one counters() read per scrape');
  const expected: Record<string, string[]> = {
    cvlan_vrouter_tunnels_active: ['tenant', 'type'],
    cvlan_vrouter_bytes_in_total: ['tunnel'],
    cvlan_vrouter_bytes_out_total: ['tunnel'],
    cvlan_vrouter_packets_in_total: ['tunnel'],
    cvlan_vrouter_packets_out_total: ['tunnel'],
    cvlan_vrouter_ike_sa_active: [],
    cvlan_vrouter_child_sa_active: [],
    cvlan_vrouter_ike_rekeys_total: [],
    cvlan_vrouter_child_rekeys_total: [],
    cvlan_vrouter_drops_total: ['reason'],
    cvlan_vrouter_handshakes_total: ['tenant', 'result'],
    cvlan_vrouter_worker_packets_total: ['worker', 'direction'],
    cvlan_vrouter_worker_restarts_total: ['worker'],
    cvlan_vrouter_worker_crypto_packets_total: ['worker', 'batch'],
    cvlan_vrouter_weak_psk_tunnels: ['tenant'],
    cvlan_vrouter_bgp_session_established: ['tenant', 'neighbor'],
    cvlan_vrouter_bgp_prefixes_announced: ['tenant'],
    cvlan_vrouter_bgp_prefixes_learned: ['tenant', 'neighbor'],
    cvlan_vrouter_bgp_updates_refused: ['tenant', 'neighbor', 'reason'],
    cvlan_vrouter_ha_active: ['node'],
    cvlan_vrouter_ha_fenced: ['node', 'reason'],
    cvlan_vrouter_ha_peer_connected: ['node'],
    cvlan_vrouter_ha_last_sync_age_seconds: ['node'],
    cvlan_vrouter_ha_synced: ['node', 'kind'],
    cvlan_vrouter_ha_takeovers_total: ['node'],
    cvlan_vrouter_ha_generation_refusals_total: ['node'],
    cvlan_vrouter_ha_sync_rejected_total: ['node', 'reason'],
    cvlan_vrouter_ha_lease_exhausted_total: ['node'],
    cvlan_vrouter_client_pool_leases: ['tenant', 'pool'],
    cvlan_vrouter_client_pool_size: ['tenant', 'pool'],
    cvlan_vrouter_clients_connected: ['tenant'],
    cvlan_vrouter_client_pool_exhausted_total: ['tenant'],
  };
  t.same(Object.keys(METRIC_LABELS).sort(), Object.keys(expected).sort(), 'published list is the required list');
  for (const [name, labelNames] of Object.entries(expected)) {
    const mine = samples.filter((s) => s.name === name);
    t.ok(mine.length > 0, `${name} present`);
    for (const s of mine) t.same(Object.keys(s.labels).sort(), [...labelNames].sort(), `${name} labels`);
    const family = name.endsWith('_total') ? name.replace(/_total$/, '') : name;
    const ty = types.get(name) ?? types.get(family);
    t.equal(ty, name.endsWith('_total') ? 'counter' : 'gauge', `${name} type`);
  }
  t.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'process metrics');

  t.equal(find(samples, 'cvlan_vrouter_tunnels_active', { tenant: 'acme', type: 'ipsec' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_client_pool_leases', { tenant: 'acme', pool: 'ra-acme-0' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_client_pool_size', { tenant: 'acme', pool: 'ra-acme-0' }), 254);
  t.equal(find(samples, 'cvlan_vrouter_clients_connected', { tenant: 'acme' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_client_pool_exhausted_total', { tenant: 'acme' }), 4);
  t.equal(find(samples, 'cvlan_vrouter_bytes_in_total', { tunnel: 'site-a' }), 123456789);
  t.equal(find(samples, 'cvlan_vrouter_bytes_out_total', { tunnel: 'site-a' }), 987654);
  t.equal(find(samples, 'cvlan_vrouter_packets_in_total', { tunnel: 'site-a' }), 100000);
  t.equal(find(samples, 'cvlan_vrouter_ike_rekeys_total'), 5);
  t.equal(find(samples, 'cvlan_vrouter_child_rekeys_total'), 7);
  t.equal(find(samples, 'cvlan_vrouter_handshakes_total', { tenant: 'globex', result: 'auth_failure' }), 4);
  t.equal(find(samples, 'cvlan_vrouter_worker_packets_total', { worker: '1', direction: 'tx' }), 480);
  t.equal(find(samples, 'cvlan_vrouter_worker_restarts_total', { worker: '1' }), 2);
  t.equal(find(samples, 'cvlan_vrouter_worker_crypto_packets_total', { worker: '0', batch: 'own' }), 800);
  t.equal(find(samples, 'cvlan_vrouter_worker_crypto_packets_total', { worker: '0', batch: 'helped' }), 100);
  t.equal(find(samples, 'cvlan_vrouter_weak_psk_tunnels', { tenant: 'acme' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_bgp_session_established', { tenant: 'acme', neighbor: 'vpc' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_bgp_session_established', { tenant: 'acme', neighbor: 'lan' }), 0, 'a session not Established is 0');
  t.equal(find(samples, 'cvlan_vrouter_bgp_prefixes_announced', { tenant: 'acme' }), 2);
  t.equal(find(samples, 'cvlan_vrouter_bgp_prefixes_learned', { tenant: 'acme', neighbor: 'vpc' }), 1);
  t.equal(find(samples, 'cvlan_vrouter_bgp_updates_refused', { tenant: 'acme', neighbor: 'vpc', reason: 'limit' }), 3);
  t.equal(find(samples, 'cvlan_vrouter_drops_total', { reason: 'no_route' }), 17);
  t.equal(find(samples, 'cvlan_vrouter_drops_total', { reason: 'other' }), 1, 'unknown reason folded into other');
  t.notOk(
    samples.some((s) => Object.values(s.labels).some((v) => v.includes('10.1.2.3'))),
    'no packet address becomes a label value',
  );
});

void t.test('values follow the source; removed tunnels disappear', async (t) => {
  const snap = sampleSnapshot();
  const src = new SnapshotStateSource(snap);
  const m = new VrouterMetrics(src, { processMetrics: false });
  let { samples } = parse(await m.scrape());
  t.equal(find(samples, 'cvlan_vrouter_bytes_in_total', { tunnel: 'site-b' }), 0);

  const next = sampleSnapshot();
  next.counters.tunnels = [{ tunnel: 'site-a', bytes_in: 200000000, bytes_out: 1, packets_in: 2, packets_out: 3 }];
  next.counters.ike_rekeys_total = 6;
  src.update(next);
  ({ samples } = parse(await m.scrape()));
  t.equal(find(samples, 'cvlan_vrouter_bytes_in_total', { tunnel: 'site-a' }), 200000000, 'set from the snapshot, not added');
  t.equal(find(samples, 'cvlan_vrouter_ike_rekeys_total'), 6);
  t.equal(find(samples, 'cvlan_vrouter_bytes_in_total', { tunnel: 'site-b' }), undefined, 'removed tunnel gone');
  t.notOk(samples.some((s) => s.name.startsWith('process_')), 'process metrics optional');
});
