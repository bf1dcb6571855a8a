// Data-plane drop codes to the API's bounded reasons (the `reason` label of cvlan_vrouter_drops_total).
import t from 'tap';
import { DROP_CODE_REASONS, dropReasonOf } from '../../src/daemon/drops.js';
import { DROP_REASONS } from '../../src/api/state.js';
import { loadBinding } from '../../src/dataplane/binding.js';

t.test('every drop code of the data plane has an explicit mapping, and no mapping is stale', async (t) => {
  const codes = loadBinding().dropCodes();
  t.ok(codes.length >= 50, `the binding lists the drop table (${codes.length} codes)`);
  t.equal(new Set(codes).size, codes.length, 'codes are unique');
  const missing = codes.filter((c) => !Object.prototype.hasOwnProperty.call(DROP_CODE_REASONS, c));
  t.same(missing, [], 'codes without a mapping in src/daemon/drops.ts');
  const stale = Object.keys(DROP_CODE_REASONS).filter((c) => !codes.includes(c));
  t.same(stale, [], 'mappings for codes the data plane no longer has');
});

t.test('every mapped reason is one the API and metrics declare', async (t) => {
  for (const [code, reason] of Object.entries(DROP_CODE_REASONS)) {
    t.ok((DROP_REASONS as readonly string[]).includes(reason), `${code} -> ${reason}`);
  }
});

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
  ];
  for (const [code, reason] of cases) t.equal(dropReasonOf(code), reason, code);
});

t.test('a code from a mismatched addon is counted as other, never as an inherited property', async (t) => {
  t.equal(dropReasonOf('something_new'), 'other');
  t.equal(dropReasonOf('constructor'), 'other');
  t.equal(dropReasonOf('__proto__'), 'other');
});
