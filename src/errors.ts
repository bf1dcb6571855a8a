/**
 * The one errors module of cvlan-vrouter. Every error the project raises on purpose carries a
 * stable `code` (CVLAN_ERR_*), the same string whether it started in Rust (the Node-API binding
 * throws with it), in the configuration loader, in the VICI client or in the admin API.
 * Codes are API: never rename one; add new ones. `test/unit/errors.test.ts` pins the list and checks every source against it.
 */

export const ErrorCodes = {
  // --- native binding / data plane (the Rust side throws these codes verbatim) ---
  CVLAN_ERR_ADDON_MISSING: 'the native addon is not built or was built for another Node.js',
  CVLAN_ERR_INVALID_ARG: 'an argument passed to the data plane is invalid',
  CVLAN_ERR_NO_TUN: '/dev/net/tun is missing or not accessible',
  CVLAN_ERR_TUN_BUSY: 'the TUN device name is already in use',
  CVLAN_ERR_TUN: 'creating or configuring a TUN device failed',
  CVLAN_ERR_ADDR_IN_USE: 'the UDP port is already in use',
  CVLAN_ERR_SOCKET: 'creating or binding a UDP socket failed',
  CVLAN_ERR_PERMISSION: 'the operation needs root or CAP_NET_ADMIN',
  CVLAN_ERR_WORKER: 'a data-plane worker thread failed',
  CVLAN_ERR_CLOSED: 'the object was already closed',
  CVLAN_ERR_STATE: 'the operation is not valid in the current state',
  CVLAN_ERR_INTERNAL: 'internal error in the data plane',
  // --- configuration ---
  CVLAN_ERR_CONFIG: 'the configuration is invalid',
  CVLAN_ERR_CONFIG_TEST_ONLY: 'a test-only transport was given to the production configuration loader',
  // --- strongSwan: VICI client and charon supervisor ---
  CVLAN_ERR_VICI_PROTOCOL: 'a VICI message or packet is malformed',
  CVLAN_ERR_VICI_TIMEOUT: 'charon did not answer a VICI request in time',
  CVLAN_ERR_VICI_COMMAND: 'charon rejected a VICI command',
  CVLAN_ERR_VICI_CLOSED: 'the VICI connection is closed',
  CVLAN_ERR_CHARON: 'starting or supervising charon failed',
  // --- admin API and vrouterctl ---
  CVLAN_ERR_API_UNAUTHORIZED: 'the request lacks a valid bearer token',
  CVLAN_ERR_API_NOT_FOUND: 'no such route or object',
  CVLAN_ERR_API_BAD_REQUEST: 'the request is malformed, carries an unexpected body or is too large',
  CVLAN_ERR_API_SOCKET_IN_USE: 'another process already answers on the admin socket',
  CVLAN_ERR_API_OPTIONS: 'the admin API options are invalid',
  CVLAN_ERR_DAEMON_UNREACHABLE: 'the admin API of the daemon cannot be reached',
  CVLAN_ERR_KEY: 'a key is not 32 bytes of valid base64',
  // --- WireGuard management (UAPI socket, wg-quick files) ---
  CVLAN_ERR_WG_UAPI: 'a WireGuard UAPI request is malformed or carries an invalid value',
  CVLAN_ERR_WG_UAPI_IN_USE: 'another process already answers on the WireGuard UAPI socket of this interface',
  // --- routing: the BGP speaker (BIRD) ---
  CVLAN_ERR_ROUTING: 'starting, configuring or reading the BGP speaker failed',
  // --- controller client (src/controller/, docs/controller-api.md) ---
  CVLAN_ERR_CONTROLLER_TOKEN: 'the controller refused the registration token',
  CVLAN_ERR_CONTROLLER_CREDENTIAL: 'the controller refused the vrouter credential (expired, revoked, unknown or badly signed)',
  CVLAN_ERR_CONTROLLER_UNREACHABLE: 'the controller cannot be reached',
  CVLAN_ERR_CONTROLLER_TLS: 'the controller certificate does not verify against the pinned CA or the system trust store',
  CVLAN_ERR_CONTROLLER_VERSION: 'the controller speaks another API version',
  CVLAN_ERR_CONTROLLER_PROTOCOL: 'the controller answered with something the API does not allow (status, size, JSON, shape)',
  // --- high availability (src/ha/, docs/ha.md) ---
  CVLAN_ERR_HA: 'starting or supervising keepalived, or steering the HA role, failed',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ErrorCodes, code);
}

/** Base class of every error cvlan-vrouter raises on purpose. */
export class CvlanError extends Error {
  readonly code: ErrorCode;
  /** Optional machine-readable details (field path, errno, ...). Never secrets. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ErrorCodes[code], options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CvlanError';
    this.code = code;
    this.details = options?.details;
  }
}

/** A field-level configuration problem: `path` names the field (`tunnels[0].auth.psk`). */
export interface ConfigIssue {
  path: string;
  reason: string;
}

export class ConfigError extends CvlanError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], code: ErrorCode = 'CVLAN_ERR_CONFIG') {
    super(code, `invalid configuration: ${issues.map((i) => `${i.path}: ${i.reason}`).join('; ')}`, {
      details: { issues },
    });
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Converts an error thrown by the native binding into a CvlanError with the same code. */
export function fromNative(err: unknown): CvlanError {
  if (err instanceof CvlanError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = isErrorCode(e?.code) ? e.code : 'CVLAN_ERR_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return new CvlanError(code, message, { cause: err });
}
