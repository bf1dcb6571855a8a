/** The HA read model shared by the admin API, /metrics and `vrouterctl ha`. */

import type { VrrpState } from './notify-fifo.js';
import type { FenceReason, HaRole } from './role.js';

/** What `vrouterctl ha` and `/v1/ha` show; never a key. */
export interface HaView {
  node_id: number;
  role: HaRole;
  vrrp_state: VrrpState | 'UNKNOWN';
  fenced: boolean;
  fence_reason: FenceReason | null;
  priority: number;
  preempt: boolean;
  vips: string[];
  peer: string;
  generation: number;
  peer_connected: boolean;
  peer_role: HaRole | null;
  peer_generation: number | null;
  last_sync_age_ms: number | null;
  synced_wireguard_sessions: number;
  synced_esp_sas: number;
  sync_frames_sent: number;
  sync_frames_received: number;
  sync_rejected_forged: number;
  sync_rejected_replayed: number;
  lease_exhausted: number;
  /** Times this node became active after having been standby. */
  takeovers: number;
  /** Times this node refused to take over because its configuration differs from the active peer's. */
  generation_refusals: number;
  keepalived_pid: number | null;
  keepalived_starts: number;
  charon_ha: boolean;
  /** Whether the sync channel is wired (the data plane's HaSync). */
  sync_channel: boolean;
  role_since: string;
}
