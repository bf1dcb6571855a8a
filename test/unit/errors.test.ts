// Error codes are API: this pins the list, and checks that every code the Rust side throws
// exists on the TypeScript side with the same spelling.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, CvlanError, ConfigError, fromNative, isErrorCode } from '../../src/errors.js';

const PINNED = [
  'CVLAN_ERR_ADDON_MISSING', 'CVLAN_ERR_INVALID_ARG', 'CVLAN_ERR_NO_TUN', 'CVLAN_ERR_TUN_BUSY', 'CVLAN_ERR_TUN',
  'CVLAN_ERR_ADDR_IN_USE', 'CVLAN_ERR_SOCKET', 'CVLAN_ERR_PERMISSION', 'CVLAN_ERR_WORKER', 'CVLAN_ERR_CLOSED',
  'CVLAN_ERR_STATE', 'CVLAN_ERR_INTERNAL', 'CVLAN_ERR_CONFIG', 'CVLAN_ERR_CONFIG_TEST_ONLY',
  'CVLAN_ERR_VICI_PROTOCOL', 'CVLAN_ERR_VICI_TIMEOUT', 'CVLAN_ERR_VICI_COMMAND', 'CVLAN_ERR_VICI_CLOSED', 'CVLAN_ERR_CHARON',
  'CVLAN_ERR_API_UNAUTHORIZED', 'CVLAN_ERR_API_NOT_FOUND', 'CVLAN_ERR_API_BAD_REQUEST', 'CVLAN_ERR_API_SOCKET_IN_USE',
  'CVLAN_ERR_API_OPTIONS', 'CVLAN_ERR_DAEMON_UNREACHABLE', 'CVLAN_ERR_KEY',
];

t.test('the code list only grows: every pinned code is still there, in order', async (t) => {
  const codes = Object.keys(ErrorCodes);
  t.same(codes.slice(0, PINNED.length), PINNED);
  for (const c of codes) {
    t.match(c, /^CVLAN_ERR_[A-Z0-9_]+$/);
    t.ok(ErrorCodes[c as keyof typeof ErrorCodes].length > 10, `${c} has a description`);
  }
});

t.test('codes thrown by the Rust core exist here', async (t) => {
  const src = readFileSync(fileURLToPath(new URL('../../crates/cvlan-dataplane/src/error.rs', import.meta.url)), 'utf8');
  const rust = [...src.matchAll(/"(CVLAN_ERR_[A-Z0-9_]+)"/g)].map((m) => m[1]!);
  t.ok(rust.length >= 10, 'found the Rust codes');
  for (const c of rust) t.ok(isErrorCode(c), `${c} is a TypeScript code`);
  const node = readFileSync(fileURLToPath(new URL('../../crates/cvlan-node/src/lib.rs', import.meta.url)), 'utf8');
  for (const m of node.matchAll(/"(CVLAN_ERR_[A-Z0-9_]+)"/g)) t.ok(isErrorCode(m[1]), `${m[1]} (binding) is a TypeScript code`);
});

t.test('CvlanError, ConfigError and fromNative', async (t) => {
  const e = new CvlanError('CVLAN_ERR_TUN_BUSY');
  t.equal(e.code, 'CVLAN_ERR_TUN_BUSY');
  t.equal(e.message, ErrorCodes.CVLAN_ERR_TUN_BUSY);
  t.ok(e instanceof Error);
  const c = new ConfigError([{ path: 'tunnels[0].auth.psk', reason: 'too short' }, { path: 'tenant_id', reason: 'missing' }]);
  t.equal(c.code, 'CVLAN_ERR_CONFIG');
  t.match(c.message, /tunnels\[0\]\.auth\.psk: too short; tenant_id: missing/);
  t.equal(c.issues.length, 2);
  const native = Object.assign(new Error('boom'), { code: 'CVLAN_ERR_NO_TUN' });
  const n = fromNative(native);
  t.equal(n.code, 'CVLAN_ERR_NO_TUN');
  t.equal(n.cause, native);
  t.equal(fromNative(Object.assign(new Error('x'), { code: 'GenericFailure' })).code, 'CVLAN_ERR_INTERNAL', 'unknown codes map to internal');
  t.equal(fromNative(e), e, 'already ours: unchanged');
});
