/**
 * Bounded, self-healing initiation of the tunnels we initiate. As many connections as there are
 * free slots are loaded with `start_action = start` (`claim`), the rest with `start_action = none`
 * and started here (`start`), at most `window` IKE_SAs in flight in all: an initiation is
 * done when its CHILD_SA comes up (`child-updown`), when its IKE_SA goes down (`ike-updown`),
 * `childGraceMs` after its IKE_SA came up without a CHILD_SA, or after `settleMs`. Loading 2000 connections with `start_action = start` made charon initiate all
 * of them at once; its IKE_AUTHs then reached the peer after the peer's half-open timeout (30 s in
 * strongSwan) had dropped the IKE_SAs, and nothing retried them.
 *
 * A tunnel is looked at again (one `list-sas` of its connection) when an initiation settles
 * without its CHILD_SA, when its IKE_SA or CHILD_SA goes down, and when a full read (the daemon's
 * safety net) shows it without an IKE_SA or with an IKE_SA but no CHILD_SA. It is initiated again
 * only when charon has nothing under way for it: no IKE_SA (nobody retries), or an established
 * IKE_SA without a CHILD_SA (charon's `initiate` then creates the CHILD_SA on it). A connecting
 * IKE_SA is charon's own retry (`keyingtries = 0`), and left to it.
 */
import { parseChildUpdown, parseIkeUpdown, type IkeSaInfo } from '../strongswan/vici/types.js';
import type { ViciSection } from '../strongswan/vici/encoding.js';

/** What charon holds for one connection, as far as initiating it goes. */
export type TunnelProgress = 'up' | 'ike-only' | 'connecting' | 'none';

/** Classifies a connection's IKE_SAs (all of one name). */
export function progressOf(sas: readonly IkeSaInfo[]): TunnelProgress {
  let best: TunnelProgress = 'none';
  for (const sa of sas) {
    if (sa.state === 'ESTABLISHED' || sa.state === 'REKEYING' || sa.state === 'REKEYED') {
      if (sa.childSas.some((c) => c.state === 'INSTALLED' || c.state === 'REKEYING' || c.state === 'REKEYED')) return 'up';
      // A CHILD_SA being negotiated on it is progress under way.
      if (sa.childSas.length > 0) best = 'connecting';
      else if (best === 'none') best = 'ike-only';
    } else if (sa.state !== 'DESTROYING') {
      // CREATED, CONNECTING, PASSIVE, DELETING: charon is at it.
      best = 'connecting';
    }
  }
  return best;
}

export interface InitiatorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface InitiatorOptions {
  /** IKE_SAs in flight at most. */
  window: number;
  /** How long one initiation may take before its slot is freed and the tunnel looked at, ms. */
  settleMs: number;
  /**
   * Once its IKE_SA is up, how long the tunnel's CHILD_SA may take, ms (default 2000, at most
   * `settleMs`). The first CHILD_SA is negotiated in the same exchange, and its `child-updown`
   * follows at once; a CHILD_SA the peer refused (`TS_UNACCEPTABLE`, `NO_PROPOSAL_CHOSEN`) sends
   * no event at all, and held its slot for all of `settleMs` (at 2000 tunnels hundreds such IKE_SAs
   * left 64 slots turning over once per 20 s).
   */
  childGraceMs?: number;
  /**
   * Starts tunnels' IKE_SAs and CHILD_SAs without waiting for the outcome (one VICI round trip
   * for all: the link serves one request at a time). Per tunnel, in order: its error, if any.
   */
  initiate(ids: readonly string[]): Promise<(Error | undefined)[]>;
  /** The tunnel's IKE_SAs as charon lists them now. */
  read(id: string): Promise<IkeSaInfo[]>;
  logger?: InitiatorLogger;
}

export class Initiator {
  readonly #o: InitiatorOptions;
  /** Tunnels we initiate (loaded into charon). */
  #wanted = new Set<string>();
  /** Waiting for a slot, in order. */
  #queue = new Set<string>();
  /** In flight: the timer that settles each. */
  #inFlight = new Map<string, NodeJS.Timeout>();
  /** Tunnels with a look pending (timer or read under way). */
  #looking = new Map<string, NodeJS.Timeout | null>();
  /** When each tunnel was last initiated (a full read older than that says nothing about it). */
  #lastStart = new Map<string, number>();
  #closed = false;
  /** Initiations sent (for tests and the benchmark). */
  started = 0;
  /** Initiations sent again for a tunnel that was not up (for tests and the benchmark). */
  retried = 0;

  constructor(o: InitiatorOptions) {
    if (!Number.isInteger(o.window) || o.window < 1) throw new RangeError('initiator window must be an integer ≥ 1');
    this.#o = o;
  }

  /** Tunnels waiting plus in flight. */
  get pending(): number {
    return this.#queue.size + this.#inFlight.size;
  }

  /**
   * Takes free slots for tunnels that charon is to start itself as they load (`start_action =
   * start`: no round trip between loading and initiating, as a single tunnel always had); returns
   * those that got one, in order. The others go to `start`.
   */
  claim(ids: readonly string[]): Set<string> {
    const got = new Set<string>();
    if (this.#closed) return got;
    for (const id of ids) {
      if (this.#inFlight.size >= this.#o.window) break;
      if (this.#inFlight.has(id)) continue;
      this.#wanted.add(id);
      this.#queue.delete(id);
      this.#cancelLook(id);
      this.#track(id);
      got.add(id);
    }
    return got;
  }

  /** In flight from now: settled by its events or after `settleMs`. */
  #track(id: string): void {
    this.#inFlight.set(id, this.#settleAfter(id, this.#o.settleMs));
    this.#lastStart.set(id, Date.now());
    this.started++;
  }

  /** A timer that frees the tunnel's slot after `ms` and looks at what charon holds for it. */
  #settleAfter(id: string, ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.#settle(id);
      this.#lookLater(id, 0);
    }, ms).unref();
  }

  /**
   * Starts the given tunnels, in windows. A tunnel loaded again (a reload that changed it) may be
   * up already: it is looked at first, so that it does not get a second CHILD_SA.
   */
  start(ids: Iterable<string>): void {
    for (const id of ids) {
      if (this.#wanted.has(id)) {
        if (!this.#inFlight.has(id) && !this.#queue.has(id)) this.#lookLater(id, 0);
        continue;
      }
      this.#wanted.add(id);
      this.#queue.add(id);
    }
    this.#pump();
  }

  /** A tunnel removed: no more initiations for it. */
  forget(id: string): void {
    this.#wanted.delete(id);
    this.#queue.delete(id);
    this.#lastStart.delete(id);
    this.#cancelLook(id);
    this.#settle(id);
  }

  /** charon (re)started: it holds nothing, whatever was in flight is gone; `start` starts over. */
  reset(): void {
    for (const id of [...this.#inFlight.keys()]) this.#settle(id, false);
    for (const id of [...this.#looking.keys()]) this.#cancelLook(id);
    this.#queue.clear();
    this.#wanted.clear();
  }

  close(): void {
    this.reset();
    this.#closed = true;
  }

  /** A charon event (`ike-updown`, `child-updown`); others are ignored. */
  event(name: string, msg: ViciSection): void {
    if (name !== 'ike-updown' && name !== 'child-updown') return;
    const ev = name === 'ike-updown' ? parseIkeUpdown(msg) : parseChildUpdown(msg);
    if (!ev || !this.#wanted.has(ev.ike.name)) return;
    const id = ev.ike.name;
    if (name === 'child-updown' && ev.up) {
      this.#cancelLook(id);
      this.#settle(id);
      return;
    }
    if (ev.up) {
      // IKE_SA up: its CHILD_SA is up within moments, or was refused (no event says so).
      const t = name === 'ike-updown' ? this.#inFlight.get(id) : undefined;
      if (t !== undefined) {
        clearTimeout(t);
        this.#inFlight.set(id, this.#settleAfter(id, Math.min(this.#o.childGraceMs ?? 2000, this.#o.settleMs)));
      }
      return;
    }
    // Down: charon may be at it again (dpd_action / close_action); look once it had the time.
    this.#settle(id);
    this.#lookLater(id);
  }

  /** A full read of every IKE_SA: tunnels it shows idle are started again. */
  seen(list: readonly IkeSaInfo[], readStartedAt: number): void {
    const byName = new Map<string, IkeSaInfo[]>();
    for (const sa of list) {
      const l = byName.get(sa.name);
      if (l) l.push(sa);
      else byName.set(sa.name, [sa]);
    }
    const again: string[] = [];
    for (const id of this.#wanted) {
      if (this.#queue.has(id) || this.#inFlight.has(id) || this.#looking.has(id)) continue;
      if ((this.#lastStart.get(id) ?? 0) >= readStartedAt) continue;
      const p = progressOf(byName.get(id) ?? []);
      if (p === 'none' || p === 'ike-only') again.push(id);
    }
    if (again.length > 0) {
      this.#o.logger?.info({ tunnels: again.length, first: again.slice(0, 5) }, 'initiating tunnels again that a full read shows without a CHILD_SA');
      this.retried += again.length;
      for (const id of again) this.#queue.add(id);
      this.#pump();
    }
  }

  #pump(): void {
    if (this.#closed) return;
    const batch: string[] = [];
    for (const id of this.#queue) {
      if (this.#inFlight.size >= this.#o.window) break;
      this.#queue.delete(id);
      if (!this.#wanted.has(id)) continue;
      this.#track(id);
      batch.push(id);
    }
    if (batch.length === 0) return;
    const failed = (id: string, e: Error): void => {
      this.#o.logger?.warn({ tunnel: id, err: e.message }, 'cannot initiate a tunnel');
      this.#settle(id);
      this.#lookLater(id);
    };
    this.#o.initiate(batch).then(
      (results) => results.forEach((e, i) => e && failed(batch[i]!, e)),
      (e: unknown) => batch.forEach((id) => failed(id, e as Error)),
    );
  }

  /** Frees the tunnel's slot, if it has one, and lets the next one in. */
  #settle(id: string, pump = true): void {
    const t = this.#inFlight.get(id);
    if (t === undefined) return;
    clearTimeout(t);
    this.#inFlight.delete(id);
    if (pump) this.#pump();
  }

  #cancelLook(id: string): void {
    const t = this.#looking.get(id);
    if (t) clearTimeout(t);
    this.#looking.delete(id);
  }

  /** Reads the tunnel's IKE_SAs after `delayMs` and starts it again if charon has nothing under way. */
  #lookLater(id: string, delayMs = this.#o.settleMs): void {
    if (this.#closed || !this.#wanted.has(id) || this.#looking.has(id)) return;
    const timer = setTimeout(() => {
      this.#looking.set(id, null);
      this.#o
        .read(id)
        .then(
          (sas) => {
            if (!this.#looking.has(id) || !this.#wanted.has(id)) return;
            this.#looking.delete(id);
            const p = progressOf(sas);
            if (p === 'up' || this.#inFlight.has(id) || this.#queue.has(id)) return;
            if (p === 'connecting') return this.#lookLater(id);
            this.#o.logger?.info({ tunnel: id, charon: p === 'none' ? 'no IKE_SA' : 'IKE_SA without CHILD_SA' }, 'initiating a tunnel again');
            this.retried++;
            this.#queue.add(id);
            this.#pump();
          },
          () => {
            // charon busy or away (its restart starts every tunnel again): look again later.
            if (this.#looking.get(id) !== null) return;
            this.#looking.delete(id);
            this.#lookLater(id);
          },
        );
    }, delayMs).unref();
    this.#looking.set(id, timer);
  }
}
