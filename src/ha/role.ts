/**
 * The role decision, as a pure function of what the node knows: keepalived's VRRP state, what
 * the sync channel says about the peer, and the configuration generations. Two independent
 * channels (VRRP adverts, the sync channel) must both lose the peer before a node serves alone:
 *
 *  - VRRP says MASTER but the sync channel shows a live, authenticated peer that is active → this
 *    node fences itself (track_file → FAULT) and stays passive: the VRRP link is cut, not the peer.
 *    The node that is not active yet yields to the one that is; two active nodes over a live sync
 *    channel (both took over during a full partition) → the lower address yields, as VRRP breaks
 *    a tie between equal priorities. A channel that is still connected but has been silent as
 *    long as VRRP (both ran over one link, now cut) does not count: it has lost the peer too.
 *  - The active peer last reported another configuration generation → this node refuses to take
 *    over (fenced, logged, metric) rather than serve tunnels the active node no longer has.
 *
 * keepalived alone decides between BACKUP and MASTER; fencing only ever removes a claim.
 */

import type { VrrpState } from './notify-fifo.js';

export type HaRole = 'active' | 'standby';

export interface RoleInputs {
  vrrp: VrrpState | 'UNKNOWN';
  /** Whether our own fence is up now (it is what makes keepalived report FAULT). */
  fenced: boolean;
  /** The role this node applies now (null before the first decision). */
  currentRole: HaRole | null;
  sync: {
    peerConnected: boolean;
    /** The peer's role as it last said on the sync channel (kept after the peer went away). */
    peerRole: HaRole | null;
    /** The peer's configuration generation, last known (kept after the peer went away). */
    peerGeneration: number | null;
    /** Milliseconds since the peer's last authenticated frame (null: none yet or unknown). */
    lastFrameAgeMs?: number | null;
  };
  /**
   * A connected peer silent for longer than this does not stop a new claim: VRRP elects a node
   * only after the adverts stopped, so a channel silent for about as long has lost the peer too
   * (the link both ran over is cut) and merely has not timed out yet.
   */
  peerSilentAfterMs?: number;
  generation: number;
  /** `[ha] local_address` and `peer_address`: the same pair on both nodes, compared the same way. */
  localAddress: string;
  peerAddress: string;
}

export type FenceReason = 'peer-active' | 'generation-mismatch';

export interface RoleDecision {
  /** What the data plane and charon do. */
  role: HaRole;
  /** Keep (or put) this node's track_file at FAULT. */
  fence: FenceReason | null;
}

export function decideRole(i: RoleInputs): RoleDecision {
  const peerActive = i.sync.peerConnected && i.sync.peerRole === 'active';
  let fence: FenceReason | null = null;
  if ((!i.sync.peerConnected || peerSilent(i)) && i.sync.peerRole === 'active' && i.sync.peerGeneration !== null && i.sync.peerGeneration !== i.generation) {
    // The active peer is gone and we never converged on its configuration: what we hold is stale.
    fence = 'generation-mismatch';
  } else if (peerActive && !i.fenced && i.vrrp === 'MASTER' && peerSilent(i)) {
    // Both channels silent: claim, rather than fence now and claim again once the channel times out.
    fence = null;
  } else if (peerActive && (i.vrrp === 'MASTER' || i.fenced)) {
    fence = yieldsTo(i) ? 'peer-active' : null;
  }
  const role: HaRole = i.vrrp === 'MASTER' && fence === null ? 'active' : 'standby';
  return { role, fence };
}

/** A connected peer whose channel has been silent for longer than `peerSilentAfterMs`. */
export function peerSilent(i: RoleInputs): boolean {
  const age = i.sync.lastFrameAgeMs;
  return age != null && i.peerSilentAfterMs !== undefined && age > i.peerSilentAfterMs;
}

/** Whether this node gives way to an active peer seen on the sync channel. */
function yieldsTo(i: RoleInputs): boolean {
  // We are not claiming: any active peer wins.
  if (i.vrrp !== 'MASTER' && !i.fenced) return true;
  // A fenced node stays fenced while the peer is active: lifting it would flap the VIP.
  if (i.fenced) return true;
  // A node claiming anew gives way to one that already serves: the VIP does not move for a cut VRRP link.
  if (i.currentRole !== 'active') return true;
  return compareAddresses(i.localAddress, i.peerAddress) < 0;
}

/** Orders two addresses of one family numerically. */
export function compareAddresses(a: string, b: string): number {
  const words = (s: string): number[] =>
    s.includes(':') ? expand6(s) : s.split('.').map((x) => Number(x));
  const wa = words(a);
  const wb = words(b);
  for (let k = 0; k < Math.max(wa.length, wb.length); k++) {
    const d = (wa[k] ?? 0) - (wb[k] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function expand6(s: string): number[] {
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => Number.parseInt(x, 16));
}
