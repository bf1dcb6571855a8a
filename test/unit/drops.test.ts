// Data-plane drop codes to the API's bounded reasons (the `reason` label of cvlan_vrouter_drops_total).
import t from 'tap';
import { dropReasonOf } from '../../src/daemon/drops.js';
import { DROP_REASONS } from '../../src/api/state.js';

t.test('each data-plane family maps onto the documented reasons', async (t) => {
  const cases: [string, string][] = [
    ['esp_auth_failed', 'auth_failed'],
    ['wg_decrypt_failed', 'auth_failed'],
    ['esp_replayed', 'replay'],
    ['wg_too_old', 'replay'],
    ['esp_unknown_spi', 'no_sa'],
    ['wg_unknown_receiver', 'no_peer'],
    ['wg_source_not_allowed', 'source_not_allowed'],
    ['esp_outside_selectors', 'source_not_allowed'],
    ['ipsec_no_policy', 'no_route'],
    ['inter_tenant_denied', 'inter_tenant_denied'],
    ['oversized', 'mtu_exceeded'],
    ['wg_oversized', 'malformed'],
    ['ike_malformed', 'malformed'],
    ['ike_rate_limited', 'rate_limited'],
    ['ike_queue_full', 'queue_full'],
    ['esp_truncated', 'malformed'],
    ['wg_rate_limited', 'rate_limited'],
    ['udp_send_failed', 'queue_full'],
    ['wg_keypair_expired', 'other'],
    ['something_new', 'other'],
  ];
  for (const [code, reason] of cases) t.equal(dropReasonOf(code), reason, code);
});

t.test('every mapped reason is one the API and metrics declare', async (t) => {
  const codes = ['no_route', 'malformed_ip', 'esp_bad_padding', 'wg_bad_mac1', 'wg_queue_full', 'tun_write_failed', 'ipsec_no_sa'];
  for (const c of codes) t.ok((DROP_REASONS as readonly string[]).includes(dropReasonOf(c)), c);
});
