/**
 * Which tunnels have an IKE_SA and where their peer is, as charon last said, so that after a
 * charon restart the vrouter can negotiate them again itself: a restarted charon remembers
 * nothing, and a tunnel on which we only respond would otherwise stay down once the data plane
 * drops the orphaned SAs (docs/charon-plugin.md, "charon restarts").
 *
 * Fed by `ike-updown` events (per IKE_SA unique id, so a replacing IKE_SA that comes up before
 * the old one goes down leaves the tunnel remembered) and by `list-sas` reads (which only add:
 * a read from a just-restarted charon must not erase what the old one had).
 */
import type { IkeSaInfo } from '../strongswan/vici/types.js';
import type { LastPeer } from './connections.js';

/** The key of an IKE_SA being negotiated again (no unique id yet). */
const PENDING = 'pending';

export class LastPeers {
  /** Tunnel → IKE_SA unique id → its peer; the last one added is the tunnel's peer. */
  #sas = new Map<string, Map<string, LastPeer>>();

  /** An IKE_SA of `tunnel` came up with the peer at `address`:`port`. */
  up(tunnel: string, uniqueId: string, address: string, port: number): void {
    const sas = this.#sas.get(tunnel) ?? new Map<string, LastPeer>();
    sas.delete(PENDING);
    sas.delete(uniqueId);
    sas.set(uniqueId, { address, port });
    this.#sas.set(tunnel, sas);
  }

  /** An IKE_SA of `tunnel` went down (deleted, failed, replaced). */
  down(tunnel: string, uniqueId: string): void {
    const sas = this.#sas.get(tunnel);
    sas?.delete(uniqueId);
    if (sas?.size === 0) this.#sas.delete(tunnel);
  }

  /** Established IKE_SAs of known tunnels from a `list-sas` read. */
  seen(list: readonly IkeSaInfo[], known: (tunnel: string) => boolean): void {
    for (const sa of list) {
      if (sa.state !== 'ESTABLISHED' || !known(sa.name) || !sa.remoteHost || sa.uniqueId === undefined) continue;
      if (this.#sas.get(sa.name)?.has(String(sa.uniqueId))) continue;
      const port = Number(sa.raw['remote-port'] ?? 500);
      this.up(sa.name, String(sa.uniqueId), sa.remoteHost, Number.isInteger(port) && port > 0 && port < 65536 ? port : 500);
    }
  }

  /**
   * `tunnel` is being negotiated again towards `peer`: remembered until an IKE_SA of it comes up,
   * so a charon that dies again before that still finds it.
   */
  pending(tunnel: string, peer: LastPeer): void {
    this.#sas.set(tunnel, new Map([[PENDING, peer]]));
  }

  forget(tunnel: string): void {
    this.#sas.delete(tunnel);
  }

  /** Per tunnel with an IKE_SA, its peer; everything is forgotten (a new charon starts empty). */
  take(): Map<string, LastPeer> {
    const out = new Map<string, LastPeer>();
    for (const [tunnel, sas] of this.#sas) {
      const last = [...sas.values()].at(-1);
      if (last) out.set(tunnel, last);
    }
    this.#sas.clear();
    return out;
  }
}
