/**
 * charon's IKE_SAs as the vrouter shows them, kept current by charon's events instead of re-read:
 * `ike-updown` / `child-updown` carry the SA that changed, `ike-rekey` / `child-rekey` the old and
 * the new one. A full `list-sas` (1.7 MB and up to a second at 2000 SAs, on a link that serves one
 * request at a time) is read only when the view may have missed events: at start, after every
 * (re)connect to charon (a restarted charon knows nothing of the old SAs) and as a slow safety net.
 * Events that arrive while a full read is under way are applied again on top of its result.
 */
import {
  parseChildRekey,
  parseChildUpdown,
  parseIkeRekey,
  parseIkeUpdown,
  type ChildSaInfo,
  type IkeSaInfo,
} from '../strongswan/vici/types.js';
import type { ViciSection } from '../strongswan/vici/encoding.js';

/** The events the view follows. */
export const IKE_VIEW_EVENTS = ['ike-updown', 'child-updown', 'ike-rekey', 'child-rekey'] as const;

/** An SA without charon's uniqueid cannot be followed by events; keyed by name then. */
const keyOf = (sa: IkeSaInfo): string => (sa.uniqueId !== undefined ? `#${sa.uniqueId}` : `n:${sa.name}`);
const childKey = (c: ChildSaInfo): string => (c.uniqueId !== undefined ? `#${c.uniqueId}` : `k:${c.key}`);

/** Prefers an established IKE_SA with an installed CHILD_SA, then any established one. */
function rank(sa: IkeSaInfo): number {
  if (sa.state !== 'ESTABLISHED') return 0;
  return sa.childSas.some((c) => c.state === 'INSTALLED') ? 2 : 1;
}

export class IkeView {
  /** IKE_SAs by uniqueid; each with its CHILD_SAs by uniqueid. */
  #sas = new Map<string, { sa: IkeSaInfo; children: Map<string, ChildSaInfo> }>();
  #list: IkeSaInfo[] | undefined;
  #byName: Map<string, IkeSaInfo> | undefined;
  /** Events seen while a full read is under way, applied again on its result. */
  #pending: [string, ViciSection][] | undefined;
  /** Events applied since the view was created (for tests and the benchmark). */
  events = 0;

  /** Every IKE_SA (a fresh array only after a change). */
  list(): readonly IkeSaInfo[] {
    this.#list ??= [...this.#sas.values()].map(({ sa, children }) => ({ ...sa, childSas: [...children.values()] }));
    return this.#list;
  }

  /** The IKE_SA shown for connection `name`: the best of its SAs (see `rank`), else undefined. */
  byName(name: string): IkeSaInfo | undefined {
    if (!this.#byName) {
      const m = new Map<string, IkeSaInfo>();
      for (const sa of this.list()) {
        const had = m.get(sa.name);
        if (!had || rank(sa) > rank(had)) m.set(sa.name, sa);
      }
      this.#byName = m;
    }
    return this.#byName.get(name);
  }

  #changed(): void {
    this.#list = undefined;
    this.#byName = undefined;
  }

  /** Replaces the view with a full read; events seen while it ran are applied on top. */
  replace(list: readonly IkeSaInfo[]): void {
    this.#sas.clear();
    for (const sa of list) this.#sas.set(keyOf(sa), { sa, children: new Map(sa.childSas.map((c) => [childKey(c), c])) });
    const pending = this.#pending ?? [];
    this.#pending = undefined;
    for (const [name, msg] of pending) this.#apply(name, msg);
    this.#changed();
  }

  /** A full read starts: events from now on are also kept for `replace`. */
  reading(): void {
    this.#pending = [];
  }

  /** A full read failed: nothing to replay. */
  readFailed(): void {
    this.#pending = undefined;
  }

  /** Applies one charon event; others are ignored. */
  apply(name: string, msg: ViciSection): void {
    if (!(IKE_VIEW_EVENTS as readonly string[]).includes(name)) return;
    this.events++;
    this.#pending?.push([name, msg]);
    this.#apply(name, msg);
    this.#changed();
  }

  #upsert(sa: IkeSaInfo): Map<string, ChildSaInfo> {
    const k = keyOf(sa);
    const had = this.#sas.get(k);
    const children = had?.children ?? new Map<string, ChildSaInfo>();
    // An event lists the IKE_SA with its current CHILD_SAs (child-updown: only the one that changed).
    for (const c of sa.childSas) children.set(childKey(c), c);
    this.#sas.set(k, { sa, children });
    return children;
  }

  #apply(name: string, msg: ViciSection): void {
    switch (name) {
      case 'ike-updown': {
        const ev = parseIkeUpdown(msg);
        if (!ev) return;
        if (ev.up) this.#upsert(ev.ike);
        else this.#sas.delete(keyOf(ev.ike));
        return;
      }
      case 'child-updown': {
        const ev = parseChildUpdown(msg);
        if (!ev) return;
        if (ev.up) {
          this.#upsert(ev.ike);
          return;
        }
        // A CHILD_SA of an IKE_SA that is gone already stays gone.
        const had = this.#sas.get(keyOf(ev.ike));
        if (!had) return;
        for (const c of ev.ike.childSas) had.children.delete(childKey(c));
        had.sa = ev.ike;
        return;
      }
      case 'ike-rekey': {
        const ev = parseIkeRekey(msg);
        if (!ev) return;
        // The CHILD_SAs move to the new IKE_SA.
        const old = this.#sas.get(keyOf(ev.old));
        this.#sas.delete(keyOf(ev.old));
        const children = this.#upsert(ev.new);
        for (const [k, c] of old?.children ?? []) if (!children.has(k)) children.set(k, c);
        return;
      }
      case 'child-rekey': {
        const ev = parseChildRekey(msg);
        if (!ev) return;
        const had = this.#sas.get(keyOf(ev.ike));
        const children = had?.children ?? this.#upsert(ev.ike);
        if (had) had.sa = { ...ev.ike, childSas: had.sa.childSas };
        for (const c of ev.children) {
          children.delete(childKey(c.old));
          children.set(childKey(c.new), c.new);
        }
        return;
      }
    }
  }
}

/**
 * Tuning: the safety-net read of every SA waits at least this many times as long as the last one
 * took, so it costs at most ~1/500 of a core in the daemon (and about as much in charon, which
 * queries each CHILD_SA's counters for it) however many SAs there are. At 2000 tunnels a read
 * takes 0.5–1 s: one every 4–8 minutes instead of every minute.
 */
export const SA_REFRESH_COST_FACTOR = 500;

/** When the next safety-net read is due, ms after the last one ended. */
export function nextSafetyNetMs(intervalMs: number, lastReadMs: number): number {
  return Math.max(intervalMs, lastReadMs * SA_REFRESH_COST_FACTOR);
}

/**
 * Full reads of the view: never two at once (a request while one runs is folded into it), the
 * result replacing the view with the events of meanwhile replayed. `read` fails while charon is
 * away; the view then keeps what it had until the next read.
 */
export class IkeResync {
  readonly #view: IkeView;
  readonly #read: () => Promise<IkeSaInfo[]>;
  #running: Promise<void> | undefined;
  #again = false;
  /** Full reads done (for tests and the benchmark). */
  reads = 0;

  constructor(view: IkeView, read: () => Promise<IkeSaInfo[]>) {
    this.#view = view;
    this.#read = read;
  }

  /**
   * Reads the view again. While a read runs, one more is queued (an event such as a reconnect
   * that asks for a read means the running one may have missed something), never more.
   */
  resync(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          this.#view.reading();
          try {
            this.#view.replace(await this.#read());
            this.reads++;
          } catch {
            this.#view.readFailed();
          }
        } while (this.#again);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** True while a full read is under way. */
  get busy(): boolean {
    return this.#running !== undefined;
  }
}
