/**
 * The packet trace over the admin API: `POST /v1/trace/start?count=&tenant=&peer=&tunnel=&prefix=`,
 * `POST /v1/trace/stop`, `POST /v1/trace/clear`, `GET /v1/trace`.
 *
 * The data plane filters by numbers (tenant tag, peer public key, SPIs, prefix); the names an
 * operator types are resolved here, from the router's own views, once at start. A tunnel is
 * traced by the SPIs of its CHILD_SAs at that moment (a rekey later brings new SPIs: start again).
 */
import { CvlanError } from '../errors.js';
import type { TracePacket, TraceStartOptions, TraceStatus } from '../dataplane/trace.js';
import type { RouterStateSource } from './state.js';

/** What the API drives: the data plane's trace (the default) or a stand-in in unit tests. */
export interface TraceControl {
  start(opts: TraceStartOptions): void;
  stop(): void;
  clear(): void;
  status(): TraceStatus;
  read(): TracePacket[];
}

/** The filter as the operator gave it. */
export interface TraceFilterQuery {
  count?: number;
  tenant?: string;
  peer?: string;
  tunnel?: string;
  prefix?: string;
}

export interface TraceFilterView {
  tenant: string | null;
  peer: string | null;
  tunnel: string | null;
  prefix: string | null;
}

export interface TraceStageView {
  stage: string;
  detail: string;
  device?: string;
  worker?: number;
  len?: number;
  from?: string;
  src?: string;
  dst?: string;
  proto?: number;
  tenant?: number;
  /** 8 lowercase hex digits, as in the tunnel views. */
  spi?: string;
  seq?: number;
  /** WireGuard receiver index, 8 lowercase hex digits. */
  receiver?: string;
  counter?: number;
  table?: string;
  peer?: number;
  to?: string;
  prefix_len?: number;
  /** The data plane's drop code (`vrouterctl drops --raw` names). */
  reason?: string;
  verdict?: string;
}

export interface TracePacketView {
  id: string;
  at_ns: number;
  stages: TraceStageView[];
}

export interface TraceView {
  status: TraceStatus & { filter: TraceFilterView };
  packets: TracePacketView[];
}

const WG_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/;

function bad(field: string, why: string): CvlanError {
  return new CvlanError('CVLAN_ERR_API_BAD_REQUEST', `${field}: ${why}`);
}

/** Turns the operator's names into the data plane's filter; throws naming the field. */
export function resolveFilter(src: RouterStateSource, q: TraceFilterQuery): TraceStartOptions {
  const opts: TraceStartOptions = {};
  if (q.count !== undefined) opts.count = q.count;
  if (q.tenant !== undefined) {
    const tag = src.tenantTag?.(q.tenant);
    if (tag === undefined) throw bad('tenant', `no tenant ${JSON.stringify(q.tenant)}`);
    opts.tenant = tag;
  }
  if (q.peer !== undefined) {
    const peers = src.wireguardPeers();
    const byName = peers.find((p) => p.name === q.peer);
    const key = byName?.public_key ?? (WG_KEY.test(q.peer) ? q.peer : undefined);
    if (key === undefined) throw bad('peer', `no WireGuard peer named ${JSON.stringify(q.peer)} (give its name or public key)`);
    opts.peer = key;
  }
  if (q.tunnel !== undefined) {
    const t = src.tunnels().find((x) => x.id === q.tunnel);
    if (!t) throw bad('tunnel', `no IPsec tunnel ${JSON.stringify(q.tunnel)}`);
    const spis = t.child_sas.flatMap((c) => [c.spi_in, c.spi_out]).map((h) => Number.parseInt(h, 16));
    if (spis.length === 0) throw bad('tunnel', `${q.tunnel} has no CHILD_SA now (no SPI to trace)`);
    opts.spis = spis;
  }
  if (q.prefix !== undefined) opts.prefix = q.prefix;
  return opts;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

function stageView(s: TracePacket['stages'][number]): TraceStageView {
  const { prefixLen, spi, receiver, ...rest } = s;
  const v: TraceStageView = { ...rest };
  if (prefixLen !== undefined) v.prefix_len = prefixLen;
  if (spi !== undefined) v.spi = hex8(spi);
  if (receiver !== undefined) v.receiver = hex8(receiver);
  for (const k of Object.keys(v) as (keyof TraceStageView)[]) if (v[k] === undefined || v[k] === null) delete v[k];
  return v;
}

/** The state of the trace and what it recorded. */
export class TraceApi {
  #filter: TraceFilterView = { tenant: null, peer: null, tunnel: null, prefix: null };
  constructor(
    private readonly src: RouterStateSource,
    private readonly control: TraceControl,
  ) {}

  start(q: TraceFilterQuery): TraceView['status'] {
    const opts = resolveFilter(this.src, q);
    try {
      this.control.start(opts);
    } catch (e) {
      // The data plane names the field it refused (`prefix: …`).
      if (e instanceof CvlanError && e.code === 'CVLAN_ERR_INVALID_ARG') throw new CvlanError('CVLAN_ERR_API_BAD_REQUEST', e.message);
      throw e;
    }
    this.#filter = { tenant: q.tenant ?? null, peer: q.peer ?? null, tunnel: q.tunnel ?? null, prefix: q.prefix ?? null };
    return this.status();
  }

  stop(): TraceView['status'] {
    this.control.stop();
    return this.status();
  }

  clear(): TraceView['status'] {
    this.control.clear();
    return this.status();
  }

  status(): TraceView['status'] {
    return { ...this.control.status(), filter: this.#filter };
  }

  view(): TraceView {
    const packets = this.control.read().map((p) => ({ id: p.id, at_ns: p.atNs, stages: p.stages.map(stageView) }));
    return { status: this.status(), packets };
  }
}
