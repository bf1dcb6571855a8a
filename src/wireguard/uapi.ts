/**
 * The WireGuard cross-platform configuration protocol ("UAPI", wireguard.com/xplatform): the
 * `set=1` and `get=1` operations, `key=value` lines, keys in lowercase hex, an `errno=` status.
 * Pure functions; `uapi-server.ts` owns the socket. Parsing follows wireguard-go's
 * device/uapi.go line by line, so `wg` sees the same `errno` for the same input:
 *
 *   errno=0     success
 *   errno=-22   EINVAL: a value that does not parse, an unknown key, a key in the wrong section
 *   errno=-71   EPROTO: a line without `=`
 *   errno=-98   EADDRINUSE: the device refused the listen port
 *   errno=-5    EIO: the device failed to apply a valid request
 *   errno=-90   EMSGSIZE: the request is larger than the server accepts (cvlan-vrouter only)
 *
 * wireguard-go writes the negative errno and `wg` negates it back into the message it prints
 * ("Unable to modify interface: Invalid argument").
 *
 * Unlike wireguard-go, which applies each line as it reads it, a request is parsed completely
 * and then applied atomically: a request with an error changes nothing. `remove` and
 * `update_only` therefore act on their whole peer section wherever they appear in it, and a
 * `replace_allowed_ips` after `allowed_ip` lines only discards them (`wg` sends flags first).
 *
 * Private and preshared keys travel over this socket exactly as with wireguard-go (`wg showconf`
 * needs them). That is the deliberate exception of the standard, root-only management
 * interface; the admin API never returns keys.
 */
import { CvlanError } from '../errors.js';
import {
  canonicalEndpoint,
  canonicalPrefix,
  WG_KEY_BYTES,
  type WgDeviceState,
  type WgDeviceUpdate,
  type WgPeerUpdate,
} from './control.js';

/** Positive errno values (Linux) the protocol reports, negated, in `errno=`. */
export const UapiErrno = {
  EIO: 5,
  EINVAL: 22,
  EMSGSIZE: 90,
  EPROTO: 71,
  EADDRINUSE: 98,
} as const;

export type UapiErrnoValue = (typeof UapiErrno)[keyof typeof UapiErrno];

/** A request the protocol refuses; `errno` is positive, the reply carries `errno=-<errno>`. */
export class UapiError extends CvlanError {
  readonly errno: UapiErrnoValue;
  constructor(errno: UapiErrnoValue, message: string) {
    super('CVLAN_ERR_WG_UAPI', message, { details: { errno } });
    this.name = 'UapiError';
    this.errno = errno;
  }
}

/** The status line that ends every reply. */
export function statusLine(errno: number): string {
  return `errno=${errno === 0 ? 0 : -Math.abs(errno)}\n\n`;
}

/** The errno to report for an error thrown while handling a request. */
export function errnoOf(err: unknown): UapiErrnoValue {
  if (err instanceof UapiError) return err.errno;
  const code = err instanceof CvlanError ? err.code : undefined;
  if (code === 'CVLAN_ERR_INVALID_ARG' || code === 'CVLAN_ERR_KEY') return UapiErrno.EINVAL;
  if (code === 'CVLAN_ERR_ADDR_IN_USE') return UapiErrno.EADDRINUSE;
  return UapiErrno.EIO;
}

const einval = (msg: string): UapiError => new UapiError(UapiErrno.EINVAL, msg);

/** 64 hex digits of either case, as Go's hex decoder into a 32-byte key accepts. */
function hexKey(value: string, key: string): Uint8Array {
  if (value.length !== 2 * WG_KEY_BYTES || !/^[0-9a-fA-F]+$/.test(value)) {
    // The value may be key material: never echo it.
    throw einval(`${key}: expected ${2 * WG_KEY_BYTES} hex digits`);
  }
  return new Uint8Array(Buffer.from(value, 'hex'));
}

/** Decimal digits only, as Go's strconv.ParseUint(value, 10, bits). */
function uint(value: string, max: number, key: string): number {
  if (!/^[0-9]+$/.test(value) || Number(value) > max) throw einval(`${key}: expected an integer 0..${max}`);
  return Number(value);
}

function flag(value: string, key: string): true {
  if (value !== 'true') throw einval(`${key}: the only valid value is "true"`);
  return true;
}

const show = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/**
 * Parses the lines of a `set=1` request between the operation line and the empty line that
 * ends it (a trailing `\r` is dropped, as Go's line scanner does). Throws `UapiError`.
 */
export function parseSetRequest(lines: readonly string[]): WgDeviceUpdate {
  const update: WgDeviceUpdate = { peers: [] };
  let peer: WgPeerUpdate | undefined;
  // Per peer, its allowed-IP lines as ordered sets (a request may carry 100k of them: linear),
  // written into the peer once the request is parsed.
  const prefixes = new Map<WgPeerUpdate, { adds: Set<string>; removes: Set<string> }>();
  for (const raw of lines) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const eq = line.indexOf('=');
    if (eq < 0) throw new UapiError(UapiErrno.EPROTO, `line without "=": ${show(line)}`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      peer = { publicKey: hexKey(value, key) };
      update.peers.push(peer);
      continue;
    }
    if (peer === undefined) {
      switch (key) {
        case 'private_key': {
          const k = hexKey(value, key);
          update.privateKey = k.every((b) => b === 0) ? null : k;
          break;
        }
        case 'listen_port':
          update.listenPort = uint(value, 0xffff, key);
          break;
        case 'fwmark':
          update.fwmark = uint(value, 0xffffffff, key);
          break;
        case 'replace_peers':
          update.replacePeers = flag(value, key);
          break;
        default:
          throw einval(`invalid UAPI device key ${show(key)}`);
      }
      continue;
    }
    switch (key) {
      case 'update_only':
        peer.updateOnly = flag(value, key);
        break;
      case 'remove':
        peer.remove = flag(value, key);
        break;
      case 'preshared_key': {
        const k = hexKey(value, key);
        peer.presharedKey = k.every((b) => b === 0) ? null : k;
        break;
      }
      case 'endpoint': {
        const e = canonicalEndpoint(value);
        if (e === null) throw einval(`endpoint ${show(value)} is not ip:port or [ip6]:port`);
        peer.endpoint = e;
        break;
      }
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = uint(value, 0xffff, key);
        break;
      case 'replace_allowed_ips':
        flag(value, key);
        // Replacing drops what the section added before it. (wireguard-go would also have taken
        // those prefixes from their previous peers first; `wg` always sends this line first.)
        peer.replaceAllowedIps = true;
        prefixes.set(peer, { adds: new Set(), removes: new Set() });
        break;
      case 'allowed_ip': {
        const remove = value.startsWith('-');
        const p = canonicalPrefix(remove ? value.slice(1) : value);
        if (p === null) throw einval(`allowed_ip ${show(value)} is not a CIDR`);
        // The last line about a prefix wins, as when the lines are applied one by one (removals
        // are applied after additions).
        let sets = prefixes.get(peer);
        if (!sets) prefixes.set(peer, (sets = { adds: new Set(), removes: new Set() }));
        if (remove) sets.removes.add(p);
        else {
          sets.removes.delete(p);
          sets.adds.add(p);
        }
        break;
      }
      case 'protocol_version':
        if (value !== '1') throw einval(`protocol_version ${show(value)} is not supported`);
        break;
      default:
        throw einval(`invalid UAPI peer key ${show(key)}`);
    }
  }
  for (const [p, { adds, removes }] of prefixes) {
    p.allowedIps = [...adds];
    if (removes.size > 0) p.removeAllowedIps = [...removes];
  }
  return update;
}

const keyHex = (k: Uint8Array | null): string => Buffer.from(k ?? new Uint8Array(WG_KEY_BYTES)).toString('hex');

/**
 * The complete reply to `get=1`, `errno=0` and the empty line included, in wireguard-go's key
 * order: `private_key` (if any), `listen_port` (if non-zero), `fwmark` (if non-zero), then per
 * peer `public_key`, `preshared_key` (zeros if none), `protocol_version`, `endpoint` (if any),
 * `last_handshake_time_sec`, `last_handshake_time_nsec`, `tx_bytes`, `rx_bytes`,
 * `persistent_keepalive_interval`, one `allowed_ip` per prefix.
 */
export function formatGetResponse(s: WgDeviceState): string {
  const out: string[] = [];
  if (s.privateKey && !s.privateKey.every((b) => b === 0)) out.push(`private_key=${keyHex(s.privateKey)}`);
  if (s.listenPort !== 0) out.push(`listen_port=${s.listenPort}`);
  if (s.fwmark !== 0) out.push(`fwmark=${s.fwmark}`);
  for (const p of s.peers) {
    out.push(`public_key=${keyHex(p.publicKey)}`, `preshared_key=${keyHex(p.presharedKey)}`, 'protocol_version=1');
    if (p.endpoint !== null) out.push(`endpoint=${p.endpoint}`);
    out.push(
      `last_handshake_time_sec=${p.lastHandshake?.sec ?? 0}`,
      `last_handshake_time_nsec=${p.lastHandshake?.nsec ?? 0}`,
      `tx_bytes=${p.txBytes}`,
      `rx_bytes=${p.rxBytes}`,
      `persistent_keepalive_interval=${p.persistentKeepalive}`,
    );
    for (const a of p.allowedIps) out.push(`allowed_ip=${a}`);
  }
  out.push('errno=0');
  return `${out.join('\n')}\n\n`;
}
