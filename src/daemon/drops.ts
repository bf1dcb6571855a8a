/**
 * The data plane counts drops by precise codes (`esp_auth_failed`, `wg_replayed`, `oversized`,
 * ...); the API and the `cvlan_vrouter_drops_total{reason}` label use the bounded set in
 * `DROP_REASONS`. This is the one mapping between them.
 */
import type { DropReason } from '../api/state.js';

const BY_CODE: Readonly<Record<string, DropReason>> = Object.freeze({
  // worker
  no_route: 'no_route',
  inter_tenant_denied: 'inter_tenant_denied',
  source_not_allowed: 'source_not_allowed',
  unknown_peer: 'no_peer',
  malformed_ip: 'malformed',
  bad_header: 'malformed',
  bad_offload: 'malformed',
  oversized: 'mtu_exceeded',
  tun_write_failed: 'queue_full',
  udp_send_failed: 'queue_full',
  // ESP / IPsec
  esp_unknown_spi: 'no_sa',
  esp_truncated: 'malformed',
  esp_auth_failed: 'auth_failed',
  esp_replayed: 'replay',
  esp_too_old: 'replay',
  esp_bad_padding: 'malformed',
  esp_bad_next_header: 'malformed',
  esp_inner_malformed: 'malformed',
  esp_outside_selectors: 'source_not_allowed',
  ipsec_no_policy: 'no_route',
  ipsec_no_sa: 'no_route',
  ipsec_malformed_ip: 'malformed',
  ike_queue_full: 'queue_full',
  ike_malformed: 'malformed',
  ike_rate_limited: 'rate_limited',
  // WireGuard
  wg_truncated: 'malformed',
  wg_bad_length: 'malformed',
  wg_unknown_type: 'malformed',
  wg_malformed: 'malformed',
  // a datagram longer than any WireGuard message: malformed, not a path MTU problem
  wg_oversized: 'malformed',
  wg_bad_mac1: 'auth_failed',
  wg_handshake_decrypt: 'auth_failed',
  wg_decrypt_failed: 'auth_failed',
  wg_cookie_required: 'rate_limited',
  wg_rate_limited: 'rate_limited',
  wg_initiation_flood: 'rate_limited',
  wg_unknown_peer: 'no_peer',
  wg_unknown_receiver: 'no_peer',
  wg_replayed: 'replay',
  wg_too_old: 'replay',
  wg_source_not_allowed: 'source_not_allowed',
  wg_no_route: 'no_route',
  wg_queue_full: 'queue_full',
});

/** The API reason of a data-plane drop code; `other` for the rest (expired keys, dummies, ...). */
export function dropReasonOf(code: string): DropReason {
  return BY_CODE[code] ?? 'other';
}
