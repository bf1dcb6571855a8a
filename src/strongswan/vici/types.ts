/**
 * Typed views of the messages charon sends (list-sa, list-conn, ike-updown, child-updown, ...).
 * charon encodes everything as strings; these helpers turn the fields the control plane uses into
 * numbers and booleans and keep the whole decoded section as `raw` for everything else.
 */

import { isSection, type ViciSection, type ViciValue } from './encoding.js';

export function str(s: ViciSection, key: string): string | undefined {
  const v = s[key];
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return undefined;
}

export function num(s: ViciSection, key: string): number | undefined {
  const v = str(s, key);
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function yes(s: ViciSection, key: string): boolean {
  return str(s, key) === 'yes';
}

export function list(s: ViciSection, key: string): string[] {
  const v = s[key];
  if (!Array.isArray(v)) return [];
  return v.map((x: ViciValue) => (typeof x === 'string' ? x : x.toString('utf8')));
}

export function sub(s: ViciSection, key: string): ViciSection | undefined {
  const v = s[key];
  return isSection(v) ? v : undefined;
}

/** One CHILD_SA as in list-sa / child-updown `child-sas`. */
export interface ChildSaInfo {
  /** The key under `child-sas` (charon uses `<name>-<uniqueid>` there). */
  key: string;
  name: string;
  uniqueId: number | undefined;
  reqid: number | undefined;
  state: string | undefined;
  mode: string | undefined;
  protocol: string | undefined;
  encap: boolean;
  /** Hex-encoded SPIs as charon prints them. */
  spiIn: string | undefined;
  spiOut: string | undefined;
  encrAlg: string | undefined;
  encrKeysize: number | undefined;
  bytesIn: number | undefined;
  bytesOut: number | undefined;
  packetsIn: number | undefined;
  packetsOut: number | undefined;
  localTs: string[];
  remoteTs: string[];
  raw: ViciSection;
}

/** One IKE_SA as in list-sa / ike-updown. */
export interface IkeSaInfo {
  /** The IKE_SA's configuration (connection) name. */
  name: string;
  uniqueId: number | undefined;
  version: number | undefined;
  state: string | undefined;
  localHost: string | undefined;
  remoteHost: string | undefined;
  localId: string | undefined;
  remoteId: string | undefined;
  initiator: boolean;
  initiatorSpi: string | undefined;
  responderSpi: string | undefined;
  encrAlg: string | undefined;
  prfAlg: string | undefined;
  dhGroup: string | undefined;
  established: number | undefined;
  childSas: ChildSaInfo[];
  raw: ViciSection;
}

export function parseChildSa(key: string, s: ViciSection): ChildSaInfo {
  return {
    key,
    name: str(s, 'name') ?? key,
    uniqueId: num(s, 'uniqueid'),
    reqid: num(s, 'reqid'),
    state: str(s, 'state'),
    mode: str(s, 'mode'),
    protocol: str(s, 'protocol'),
    encap: yes(s, 'encap'),
    spiIn: str(s, 'spi-in'),
    spiOut: str(s, 'spi-out'),
    encrAlg: str(s, 'encr-alg'),
    encrKeysize: num(s, 'encr-keysize'),
    bytesIn: num(s, 'bytes-in'),
    bytesOut: num(s, 'bytes-out'),
    packetsIn: num(s, 'packets-in'),
    packetsOut: num(s, 'packets-out'),
    localTs: list(s, 'local-ts'),
    remoteTs: list(s, 'remote-ts'),
    raw: s,
  };
}

export function parseIkeSa(name: string, s: ViciSection): IkeSaInfo {
  const children = sub(s, 'child-sas') ?? {};
  return {
    name,
    uniqueId: num(s, 'uniqueid'),
    version: num(s, 'version'),
    state: str(s, 'state'),
    localHost: str(s, 'local-host'),
    remoteHost: str(s, 'remote-host'),
    localId: str(s, 'local-id'),
    remoteId: str(s, 'remote-id'),
    initiator: yes(s, 'initiator'),
    initiatorSpi: str(s, 'initiator-spi'),
    responderSpi: str(s, 'responder-spi'),
    encrAlg: str(s, 'encr-alg'),
    prfAlg: str(s, 'prf-alg'),
    dhGroup: str(s, 'dh-group'),
    established: num(s, 'established'),
    childSas: Object.entries(children).flatMap(([k, v]) => (isSection(v) ? [parseChildSa(k, v)] : [])),
    raw: s,
  };
}

/** Sections of a message whose keys are names (list-sa, list-conn, updown events minus `up`). */
function namedSections(msg: ViciSection): Array<[string, ViciSection]> {
  return Object.entries(msg).flatMap(([k, v]) => (isSection(v) ? [[k, v] as [string, ViciSection]] : []));
}

export interface IkeUpdownEvent {
  up: boolean;
  ike: IkeSaInfo;
}

export interface ChildUpdownEvent {
  up: boolean;
  /** The IKE_SA, with only the affected CHILD_SA in `childSas`. */
  ike: IkeSaInfo;
}

export interface IkeRekeyEvent {
  name: string;
  old: IkeSaInfo;
  new: IkeSaInfo;
}

export interface ChildRekeyEvent {
  ike: IkeSaInfo;
  /** `childSas` of `ike` is empty here: the rekeyed pairs are in `children`. */
  children: Array<{ key: string; old: ChildSaInfo; new: ChildSaInfo }>;
}

export interface LogEvent {
  group: string | undefined;
  level: number | undefined;
  thread: number | undefined;
  ikeSaName: string | undefined;
  msg: string;
}

export interface ConnInfo {
  name: string;
  localAddrs: string[];
  remoteAddrs: string[];
  version: string | undefined;
  children: string[];
  raw: ViciSection;
}

export function parseListSa(msg: ViciSection): IkeSaInfo[] {
  return namedSections(msg).map(([k, v]) => parseIkeSa(k, v));
}

export function parseListConn(msg: ViciSection): ConnInfo[] {
  return namedSections(msg).map(([name, s]) => ({
    name,
    localAddrs: list(s, 'local_addrs'),
    remoteAddrs: list(s, 'remote_addrs'),
    version: str(s, 'version'),
    children: Object.keys(sub(s, 'children') ?? {}),
    raw: s,
  }));
}

function firstIke(msg: ViciSection): IkeSaInfo | undefined {
  const first = namedSections(msg)[0];
  return first ? parseIkeSa(first[0], first[1]) : undefined;
}

export function parseIkeUpdown(msg: ViciSection): IkeUpdownEvent | undefined {
  const ike = firstIke(msg);
  return ike ? { up: yes(msg, 'up'), ike } : undefined;
}

export function parseChildUpdown(msg: ViciSection): ChildUpdownEvent | undefined {
  const ike = firstIke(msg);
  return ike ? { up: yes(msg, 'up'), ike } : undefined;
}

export function parseIkeRekey(msg: ViciSection): IkeRekeyEvent | undefined {
  const first = namedSections(msg)[0];
  if (!first) return undefined;
  const [name, s] = first;
  const o = sub(s, 'old');
  const n = sub(s, 'new');
  if (!o || !n) return undefined;
  return { name, old: parseIkeSa(name, o), new: parseIkeSa(name, n) };
}

export function parseChildRekey(msg: ViciSection): ChildRekeyEvent | undefined {
  const first = namedSections(msg)[0];
  if (!first) return undefined;
  const [name, s] = first;
  const childSas = sub(s, 'child-sas') ?? {};
  const children: ChildRekeyEvent['children'] = [];
  for (const [key, c] of Object.entries(childSas)) {
    if (!isSection(c)) continue;
    const o = sub(c, 'old');
    const n = sub(c, 'new');
    if (o && n) children.push({ key, old: parseChildSa(key, o), new: parseChildSa(key, n) });
  }
  const rest: ViciSection = { ...s };
  delete rest['child-sas'];
  return { ike: parseIkeSa(name, rest), children };
}

export function parseLog(msg: ViciSection): LogEvent {
  return {
    group: str(msg, 'group'),
    level: num(msg, 'level'),
    thread: num(msg, 'thread'),
    ikeSaName: str(msg, 'ikesa-name'),
    msg: str(msg, 'msg') ?? '',
  };
}
