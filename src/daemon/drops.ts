/**
 * The data plane counts drops by precise codes (`esp_auth_failed`, `wg_replayed`, `oversized`,
 * ...; the one table is `crates/cvlan-dataplane/src/counters.rs`, listed at run time by the
 * binding's `dropCodes()`); the API and the `cvlan_vrouter_drops_total{reason}` label use the
 * bounded set in `DROP_REASONS`. This is the one mapping between them, and it is total: every
 * code is listed, `other` included (test/unit/drops.test.ts fails on a code missing here).
 */
import type { DropReason } from '../api/state.js';

export const DROP_CODE_REASONS: Readonly<Record<string, DropReason>> = Object.freeze({
  // workers and transports
  malformed_ip: 'malformed',
  no_route: 'no_route',
  source_not_allowed: 'source_not_allowed',
  unknown_peer: 'no_peer',
  bad_header: 'malformed',
  oversized: 'mtu_exceeded',
  tun_write_failed: 'queue_full',
  udp_send_failed: 'queue_full',
  bad_offload: 'malformed',
  inter_tenant_denied: 'inter_tenant_denied',
  ha_standby: 'other', // a passive HA standby sends nothing
  // ESP
  esp_unknown_spi: 'no_sa',
  esp_truncated: 'malformed',
  esp_auth_failed: 'auth_failed',
  esp_replayed: 'replay',
  esp_too_old: 'replay',
  esp_bad_padding: 'malformed',
  esp_bad_next_header: 'malformed',
  esp_dummy: 'other', // RFC 4303 §2.6 dummy packets are discarded by design
  esp_inner_malformed: 'malformed',
  esp_outside_selectors: 'source_not_allowed',
  esp_sa_expired: 'other',
  esp_sequence_overflow: 'other',
  esp_lease_exhausted: 'other', // an HA lease ran out: the SA rekeys
  esp_buffer_too_small: 'other',
  // the IPsec engine
  ipsec_no_policy: 'no_route',
  ipsec_no_sa: 'no_route',
  ipsec_raw_esp_unsupported: 'other',
  ike_relay_failed: 'other',
  ike_queue_full: 'queue_full',
  ike_malformed: 'malformed',
  ike_rate_limited: 'rate_limited',
  ipsec_malformed_ip: 'malformed',
  // WireGuard
  wg_truncated: 'malformed',
  // a datagram longer than any WireGuard message: malformed, not a path MTU problem
  wg_oversized: 'malformed',
  wg_unknown_type: 'malformed',
  wg_bad_length: 'malformed',
  wg_bad_mac1: 'auth_failed',
  wg_cookie_required: 'rate_limited',
  wg_rate_limited: 'rate_limited',
  wg_handshake_decrypt: 'auth_failed',
  wg_unknown_peer: 'no_peer',
  wg_low_order_key: 'other',
  wg_stale_initiation: 'other',
  wg_initiation_flood: 'rate_limited',
  wg_unexpected_response: 'other',
  wg_bad_cookie_reply: 'other',
  wg_unknown_receiver: 'no_peer',
  wg_data_before_handshake: 'other',
  wg_keypair_expired: 'other',
  wg_replayed: 'replay',
  wg_too_old: 'replay',
  wg_decrypt_failed: 'auth_failed',
  wg_message_limit: 'other',
  wg_source_not_allowed: 'source_not_allowed',
  wg_no_route: 'no_route',
  wg_no_endpoint: 'other',
  wg_no_private_key: 'other',
  wg_queue_full: 'queue_full',
  wg_handshake_timeout: 'other',
  wg_malformed: 'malformed',
});

/**
 * The API reason of a data-plane drop code. A code missing from the table can only come from an
 * addon built from other sources than this file; it is counted as `other` rather than lost.
 */
export function dropReasonOf(code: string): DropReason {
  return Object.prototype.hasOwnProperty.call(DROP_CODE_REASONS, code) ? DROP_CODE_REASONS[code]! : 'other';
}
