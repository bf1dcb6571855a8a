/**
 * The controller API's wire constants and request signing, shared by the client and the
 * reference controller. The API itself is `api/controller.openapi.json`; the prose is
 * `docs/controller-api.md`.
 *
 * Requests after registration carry
 *   Authorization: CVLAN-Ed25519 id=<vrouter id>,ts=<unix seconds>,sig=<base64>
 * where sig is the vrouter's Ed25519 signature over `signedText()`. A signature per request
 * (rather than a bearer token) keeps the controller free of anything worth stealing: it stores
 * public keys only, and a captured request is useless after SIGNATURE_WINDOW_S.
 */
import { createHash } from 'node:crypto';

/** The API version this build speaks, in the path (`/cvlan/v1/`) and in the header. */
export const API_VERSION = '1';
export const API_VERSION_HEADER = 'cvlan-api-version';
export const API_PREFIX = `/cvlan/v${API_VERSION}`;
export const AUTH_SCHEME = 'CVLAN-Ed25519';
/** Seconds a signed request's timestamp may differ from the controller's clock. */
export const SIGNATURE_WINDOW_S = 300;
/** Longest long poll the API allows, seconds (`wait` query parameter). */
export const MAX_WAIT_S = 300;

export const paths = {
  register: `${API_PREFIX}/register`,
  config: (id: string): string => `${API_PREFIX}/vrouters/${encodeURIComponent(id)}/config`,
  status: (id: string): string => `${API_PREFIX}/vrouters/${encodeURIComponent(id)}/status`,
  credential: (id: string): string => `${API_PREFIX}/vrouters/${encodeURIComponent(id)}/credential`,
};

/** Stable `code`s of the API's error bodies. */
export type ApiErrorCode =
  | 'bad_request'
  | 'bad_token'
  | 'bad_signature'
  | 'credential_expired'
  | 'credential_revoked'
  | 'unknown_vrouter'
  | 'unsupported_api_version'
  | 'not_found'
  | 'too_large';

/** The text a request signature covers. */
export function signedText(method: string, pathAndQuery: string, ts: number, body: Buffer | string): Buffer {
  const digest = createHash('sha256').update(body).digest('hex');
  return Buffer.from(`cvlan-v1\n${method.toUpperCase()}\n${pathAndQuery}\n${ts}\n${digest}`, 'utf8');
}

/** What registration's proof of possession signs. */
export function registerProofText(token: string, publicKey: string): Buffer {
  return Buffer.from(`cvlan-v1 register\n${token}\n${publicKey}`, 'utf8');
}

/** What a rotation's proof (signed by the new key) covers. */
export function rotateProofText(vrouterId: string, publicKey: string): Buffer {
  return Buffer.from(`cvlan-v1 rotate\n${vrouterId}\n${publicKey}`, 'utf8');
}

export function authorizationHeader(id: string, ts: number, sig: Buffer): string {
  return `${AUTH_SCHEME} id=${id},ts=${ts},sig=${sig.toString('base64')}`;
}

export function parseAuthorization(h: string | undefined): { id: string; ts: number; sig: Buffer } | undefined {
  const m = h === undefined ? null : /^CVLAN-Ed25519 id=([A-Za-z0-9][A-Za-z0-9_.-]{0,62}),ts=([0-9]{1,12}),sig=([A-Za-z0-9+/]{86}==)$/.exec(h);
  if (!m) return undefined;
  return { id: m[1]!, ts: Number(m[2]), sig: Buffer.from(m[3]!, 'base64') };
}

/** The ETag of a generation (quoted, as RFC 9110 §8.8.3 writes them). */
export function etagOf(generation: number): string {
  return `"g${generation}"`;
}

/** One status report (schema StatusReport). */
export interface StatusReport {
  reported_at: string;
  applied_generation: number | null;
  config_version: string | null;
  refused: { generation: number; issues: { field: string; reason: string }[] } | null;
  tunnels: {
    id: string;
    tenant: string;
    state: 'down' | 'connecting' | 'up' | 'rekeying' | 'deleting';
    child_sas: number;
    bytes_in: number;
    bytes_out: number;
    packets_in: number;
    packets_out: number;
  }[];
  peers: {
    public_key: string;
    tenant: string;
    state: 'up' | 'down';
    endpoint: string | null;
    latest_handshake: string | null;
    rx_bytes: number;
    tx_bytes: number;
  }[];
  counters: { udp_rx_bytes: number; udp_tx_bytes: number; tun_rx_bytes: number; tun_tx_bytes: number; translated: number; dropped: number };
}
