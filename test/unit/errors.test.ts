// Error codes are API: this pins the list, and checks every source (TypeScript, Rust, C) against
// it: a code used anywhere must be declared, a declared code must be used.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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

const root = fileURLToPath(new URL('../../', import.meta.url));
const SOURCE = /\.(ts|mts|js|mjs|rs|c|h)$/;

/** Every source file under `dir` (build output and dependencies left out). */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'target' && e.name !== 'node_modules') out.push(...sources(rel));
    } else if (SOURCE.test(e.name)) out.push(rel);
  }
  return out;
}

const files = ['src', 'crates', 'native'].flatMap(sources);
const text = new Map(files.map((f) => [f, readFileSync(join(root, f), 'utf8')]));
/** Codes named in sources; `CVLAN_ERR_VICI_*` in prose names a family, not a code. */
const mentions = (f: string): string[] => [...text.get(f)!.matchAll(/CVLAN_ERR_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)/g)].map((m) => m[0]);

t.test('every code any source mentions is declared in src/errors.ts', async (t) => {
  t.ok(files.some((f) => f.startsWith('crates/')) && files.some((f) => f.startsWith('native/')), 'scanned every tree');
  const undeclared = files.flatMap((f) => mentions(f).filter((c) => !isErrorCode(c)).map((c) => `${f}: ${c}`));
  t.same(undeclared, [], 'codes used but not declared');
  const rust = mentions('crates/cvlan-dataplane/src/error.rs');
  t.ok(rust.length >= 10, 'found the Rust codes');
});

t.test('every declared code is used somewhere besides its declaration', async (t) => {
  const used = new Set(files.filter((f) => f !== 'src/errors.ts').flatMap(mentions));
  const unused = Object.keys(ErrorCodes).filter((c) => !used.has(c));
  t.same(unused, [], 'declared codes no source uses');
});

t.test('the Rust side spells codes once: only cvlan-dataplane/src/error.rs has code strings', async (t) => {
  const literal = /"CVLAN_ERR_[A-Z0-9_]+"/;
  const elsewhere = files.filter((f) => f.startsWith('crates/') && f !== 'crates/cvlan-dataplane/src/error.rs' && literal.test(text.get(f)!));
  t.same(elsewhere, [], 'Rust files with literal code strings (use cvlan_dataplane::Code)');
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
