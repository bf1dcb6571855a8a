/**
 * charon's own `ha` plugin between the two charons (docs/ha.md, "IKE state"): it copies every
 * IKE_SA, CHILD_SA and IKE message ID to the other charon, which installs the CHILD_SAs through
 * the `cvlan` kernel plugin into its (passive) data plane and holds the IKE_SAs as PASSIVE until
 * its segment is activated through the plugin's FIFO.
 *
 * The plugin's UDP datagrams are plaintext unless its `secret` is set, and the secret would route
 * them through an IPsec SA of its own — through our kernel plugin. Neither goes on the wire: charon
 * talks to loopback, and the sync channel (authenticated, encrypted) relays the datagrams to the
 * peer's loopback.
 */

import { open } from 'node:fs/promises';
import { constants, readlinkSync } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import type { HaConfig } from '../config/model.js';

/** The plugin's port (ha_socket.c HA_PORT), fixed in its source. */
export const CHARON_HA_PORT = 4510;
/** charon binds here (its `local`) and receives what the relay delivers. */
export const CHARON_HA_LOCAL = '127.0.0.1';
/** charon sends here (its `remote`): the sync channel's relay socket. */
export const CHARON_HA_RELAY = '127.0.0.2';
/** One segment: the pair is active-passive, every IKE_SA lives on the active node. */
export const CHARON_HA_SEGMENT = 1;
/** The plugin's control FIFO (IPSEC_PIDDIR "/charon.ha" in ha_ctl.c), inside charon's mount namespace. */
export const CHARON_HA_FIFO = '/var/run/charon.ha';

/** The settings for `charon.plugins.ha`, and the relay the sync channel runs for them. */
export function charonHaSettings(ha: HaConfig): {
  plugin: 'ha';
  settings: Record<string, string | number | boolean>;
  relay: { bind: string; deliverTo: string };
} {
  if (!ha.charonHa) throw new Error('charon_ha is off');
  return {
    plugin: 'ha',
    settings: {
      local: CHARON_HA_LOCAL,
      remote: CHARON_HA_RELAY,
      segment_count: 1,
      // keepalived decides who is active; the plugin's own heartbeat would be a second opinion.
      monitor: false,
      fifo_interface: true,
      // A (re)started charon asks the active one for every IKE_SA it holds.
      resync: true,
    },
    relay: { bind: `${CHARON_HA_RELAY}:${CHARON_HA_PORT}`, deliverTo: `${CHARON_HA_LOCAL}:${CHARON_HA_PORT}` },
  };
}

/**
 * The FIFO as seen from the daemon: charon runs with a private /run in tests (its own mount
 * namespace), so the path goes through /proc/<pid>/root, which resolves in charon's namespace.
 */
export function charonHaFifoPath(charonPid: number | undefined): string {
  if (charonPid === undefined) return CHARON_HA_FIFO;
  const root = `/proc/${charonPid}/root`;
  // /var/run is a symlink to /run (absolute): followed as is it would leave charon's root.
  let dir = '/var/run';
  try {
    const target = readlinkSync(`${root}/var/run`);
    dir = isAbsolute(target) ? target : posix.join('/var', target);
  } catch {
    // not a symlink (or charon gone): the path as compiled in
  }
  return `${root}${posix.join(dir, 'charon.ha')}`;
}

/**
 * Activates ("+1": PASSIVE IKE_SAs become ESTABLISHED, this charon answers and initiates) or
 * deactivates ("-1") the segment.
 */
export async function setCharonHaSegment(fifoPath: string, active: boolean): Promise<void> {
  await writeCharonHaCommand(fifoPath, active ? '+' : '-');
}

/**
 * Makes this charon push its whole cache of the segment to the other one ("*1", ha_cache.c
 * `resync`): what a (re)joining standby needs, whose own resync request (sent once, when its
 * charon started) went nowhere while the sync channel was not up yet. The plugin then rekeys
 * every CHILD_SA of the segment (it assumes the other node lacks their sequence numbers): one
 * CREATE_CHILD_SA per CHILD_SA, no new IKE_SA.
 */
export async function resyncCharonHaSegment(fifoPath: string): Promise<void> {
  await writeCharonHaCommand(fifoPath, '*');
}

/**
 * The plugin reads the FIFO in a loop, one command per open; a non-blocking open fails with ENXIO
 * while no reader is there (charon still starting).
 */
async function writeCharonHaCommand(fifoPath: string, op: '+' | '-' | '*'): Promise<void> {
  const fh = await open(fifoPath, constants.O_WRONLY | constants.O_NONBLOCK);
  try {
    await fh.write(`${op}${CHARON_HA_SEGMENT}\n`);
  } finally {
    await fh.close();
  }
}
