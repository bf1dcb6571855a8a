/**
 * `[ha]` → keepalived.conf: one VRRP instance with unicast peers (clouds carry no multicast),
 * the VIPs as virtual addresses, role changes reported on a notify FIFO the daemon reads (no
 * scripts), and a `track_file` the daemon writes to fence its own node (a non-zero value puts the
 * instance into FAULT, so it neither holds nor claims the VIP).
 *
 * Both nodes start as BACKUP: the VRRP election, not the file, decides who is active, and with
 * `nopreempt` a recovered node does not take the VIP back unless `[ha] preempt` asks for it.
 */

import type { HaConfig } from '../config/model.js';

/** The one VRRP instance's name, as it appears on the notify FIFO. */
export const VRRP_INSTANCE = 'cvlan';
/** Seconds between the active node's periodic gratuitous ARPs / unsolicited NAs for its VIPs. */
export const GARP_REFRESH_S = 1;
/** The track_file's name inside keepalived.conf. */
export const FENCE_TRACK = 'cvlan_fence';

export interface KeepalivedPaths {
  /** Where keepalived writes role changes (`INSTANCE "cvlan" MASTER 100`). */
  notifyFifo: string;
  /** The fencing file: "0" serves, "1" forces FAULT. */
  fenceFile: string;
}

/** Quotes a value for keepalived's parser (addresses, names and paths never need escaping here). */
function q(s: string): string {
  if (/["\s\\]/.test(s)) throw new Error(`keepalived value ${JSON.stringify(s)} cannot be quoted`);
  return `"${s}"`;
}

export function renderKeepalivedConf(ha: HaConfig, paths: KeepalivedPaths): string {
  const advert = (ha.advertIntervalMs / 1000).toFixed(2);
  const lines = [
    '# Written by cvlan-vrouter from [ha] in the local TOML; rewritten on every start.',
    'global_defs {',
    `  router_id cvlan-node-${ha.nodeId}`,
    // Root runs no scripts from this file; keepalived insists on a user for them otherwise.
    '  enable_script_security',
    '  script_user root',
    `  notify_fifo ${q(paths.notifyFifo)}`,
    // Gratuitous ARPs after a takeover, repeated so that a lost one does not cost the advert interval.
    '  vrrp_garp_master_delay 1',
    '  vrrp_garp_master_repeat 3',
    // And every second while MASTER (unsolicited NAs for IPv6 VIPs): a node whose VRRP adverts are
    // cut claims MASTER, announces the VIP and only then fences itself (its sync channel shows the
    // active peer); its announcement moves the neighbours' entry for the VIP to it, and nothing
    // else moves it back. The active node cannot see that claim (VRRP is what is cut, and the
    // claimer never reports active on the sync channel), so it re-announces on a short period:
    // the misdirection lasts at most about this interval instead of until the entry expires.
    `  vrrp_garp_master_refresh ${GARP_REFRESH_S}`,
    '}',
    '',
    `track_file ${FENCE_TRACK} {`,
    `  file ${q(paths.fenceFile)}`,
    '  weight 0',
    '}',
    '',
    `vrrp_instance ${VRRP_INSTANCE} {`,
    '  state BACKUP',
    `  interface ${ha.interface}`,
    `  virtual_router_id ${ha.virtualRouterId}`,
    `  priority ${ha.priority}`,
    `  advert_int ${advert}`,
    '  version 3',
    ...(ha.preempt ? [] : ['  nopreempt']),
    `  unicast_src_ip ${ha.localAddress}`,
    '  unicast_peer {',
    `    ${ha.peerAddress}`,
    '  }',
    '  virtual_ipaddress {',
    ...ha.vips.map((v) => `    ${v} dev ${ha.interface}`),
    ...ha.privateVips.map((v) => `    ${v} dev ${ha.privateInterface}`),
    '  }',
    '  track_file {',
    `    ${FENCE_TRACK}`,
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}
