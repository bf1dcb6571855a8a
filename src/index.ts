/**
 * The public API of the `cvlan-vrouter` package (`import … from 'cvlan-vrouter'`): a userspace
 * WireGuard device on the project's data plane, as the daemon itself uses it. Open a device,
 * give it keys and peers, listen to its events, read its counters; optionally serve the UAPI
 * socket so `wg(8)` manages it; read and write wg-quick files.
 *
 * Everything exported here follows semantic versioning (docs/library.md); nothing else in the
 * package does. Packets never pass through JavaScript: the device's workers are native threads.
 */

// --- the device -----------------------------------------------------------------------------
export { WireGuardDevice, totals, nativeInfo, addonPath } from './dataplane/index.js';
export type { WireGuardDeviceOptions, WgCounters, WgPeerTraffic, WorkerStats, DataplaneEvent, DeviceEvents, NativeInfo } from './dataplane/index.js';

// --- its configuration: the UAPI model (`get=1` / `set=1`) ------------------------------------
export { InMemoryWireGuard, canonicalEndpoint, canonicalPrefix, WG_KEY_BYTES } from './wireguard/control.js';
export type { WireGuardControl, WgDeviceState, WgDeviceUpdate, WgPeerState, WgPeerUpdate } from './wireguard/control.js';

// --- management by wg(8) and wg-quick files ---------------------------------------------------
export { startUapiServer } from './wireguard/uapi-server.js';
export type { UapiServer, UapiServerOptions } from './wireguard/uapi-server.js';
export { parseWgQuick, formatWgQuick } from './wireguard/wgquick.js';
export type { WgQuickConfig, WgQuickInterface } from './wireguard/wgquick.js';

// --- keys in `wg genkey` form -----------------------------------------------------------------
export { genkey, pubkey, decodeKey, encodeKey } from './secrets/keys.js';
export type { SecureKey } from './secrets/keys.js';

// --- errors: every error raised on purpose carries a stable `code` ----------------------------
export { CvlanError, ConfigError, ErrorCodes, isErrorCode } from './errors.js';
export type { ErrorCode, ConfigIssue } from './errors.js';
