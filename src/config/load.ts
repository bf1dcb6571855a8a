/**
 * The single entry the daemon uses: controller documents + local TOML + the secrets key →
 * one validated, normalized, frozen DesiredState, or one ConfigError listing every issue (the
 * running configuration then stays as it is: nothing is half-applied).
 *
 *   loadDesiredState({ controllerDocs, localToml, secretsKey })   controller mode
 *   loadStandalone(path, ...)                                     the same JSON from a file
 *   loadDemoDefault(vars)                                         the embedded demo document
 *   configVersion(state)                                          stable hash of the normalized state
 */

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { ConfigError, CvlanError, type ConfigIssue, type ErrorCode } from '../errors.js';
import { decodeKey, encodeKey, generatePrivateKey, publicKeyOf } from '../secrets/keys.js';
import type { SealKeypair } from '../secrets/sealed.js';
import { parseControllerDocs } from './controller.js';
import { defaultLocalConfig, parseLocalToml, DEFAULT_LOCAL_TOML } from './local.js';
import { Secret, deepFreeze, type DesiredState, type LocalConfig } from './model.js';
import { isObj } from './normalize.js';
import demoDocument from './default-demo.json' with { type: 'json' };

const sodium = createRequire(import.meta.url)('sodium-native') as {
  crypto_generichash(out: Buffer, input: Buffer, key?: Buffer): void;
  sodium_memzero(b: Buffer): void;
};

export interface LoadOptions {
  /**
   * Parsed controller JSON: a list of documents (each a tenant document, `{"tenants": [...]}` or
   * an array of tenant documents), or one non-array document. An array given here is always
   * the list: wrap an array-form document as `[doc]`.
   */
  controllerDocs: unknown;
  /** TOML text of the local overrides (or text and file name for messages), or an already parsed LocalConfig. Default: all defaults. */
  localToml?: string | { text: string; file?: string } | LocalConfig;
  /** The vrouter's secrets key pair; required when any value is `"encrypted:..."`. */
  secretsKey?: SealKeypair;
  /**
   * Where WireGuard private keys the documents leave out are generated and kept
   * (`<dir>/wireguard/<tenant>.key`, 0600). Default: the local `[state] dir`. `null`: never
   * touch the disk; such tenants then have no private key in the state.
   */
  stateDir?: string | null;
}

/** Keys for configVersion, per state: derived from the secrets key when one was given. */
const versionKeys = new WeakMap<DesiredState, Buffer>();
/** Used when no secrets key is known: versions are then stable only within this process. */
const processVersionKey = randomBytes(32);

function isLocalConfig(v: unknown): v is LocalConfig {
  return isObj(v) && isObj(v.ipsec) && isObj(v.state) && !('text' in v);
}

/**
 * Validates and normalizes everything at once. Issues from the TOML and from the controller
 * documents are reported together in one ConfigError.
 */
export function loadDesiredState(opts: LoadOptions): DesiredState {
  const issues: ConfigIssue[] = [];
  let code: ErrorCode = 'CVLAN_ERR_CONFIG';
  const collect = (e: unknown): void => {
    if (!(e instanceof ConfigError)) throw e;
    issues.push(...e.issues);
    if (e.code === 'CVLAN_ERR_CONFIG_TEST_ONLY') code = e.code;
  };

  let local: LocalConfig | undefined;
  try {
    const t = opts.localToml;
    if (t === undefined) local = defaultLocalConfig();
    else if (typeof t === 'string') local = parseLocalToml(t, DEFAULT_LOCAL_TOML);
    else if (isLocalConfig(t)) local = t;
    else local = parseLocalToml(t.text, t.file ?? DEFAULT_LOCAL_TOML);
  } catch (e) {
    collect(e);
  }

  const docs: readonly unknown[] = Array.isArray(opts.controllerDocs) ? opts.controllerDocs : [opts.controllerDocs];
  let ctrl: ReturnType<typeof parseControllerDocs> | undefined;
  try {
    ctrl = parseControllerDocs(docs, opts.secretsKey ? { secretsKey: opts.secretsKey } : {});
  } catch (e) {
    collect(e);
  }

  if (issues.length > 0 || !local || !ctrl) {
    if (ctrl) for (const t of ctrl.tenants) disposeTenantSecrets(t);
    throw new ConfigError(issues, code);
  }

  const stateDir = opts.stateDir === undefined ? local.state.dir : opts.stateDir;
  for (const t of ctrl.tenants) {
    if (t.wireguard && !t.wireguard.privateKey && stateDir !== null) {
      const key = loadOrCreateWireguardKey(join(stateDir, 'wireguard', `${t.id}.key`));
      t.wireguard.privateKey = key.secret;
      t.wireguard.publicKey = key.publicKey;
    }
  }

  const state: DesiredState = deepFreeze({
    ...(ctrl.vrouterId !== undefined ? { vrouterId: ctrl.vrouterId } : {}),
    local,
    tenants: ctrl.tenants,
    rules: ctrl.rules,
  });
  if (opts.secretsKey) {
    const k = Buffer.alloc(32);
    sodium.crypto_generichash(k, Buffer.from('cvlan-vrouter config version v1'), opts.secretsKey.secretKey.bytes);
    versionKeys.set(state, k);
  }
  return state;
}

function disposeTenantSecrets(t: DesiredState['tenants'][number]): void {
  for (const u of t.remoteAccess?.users ?? []) u.secret.dispose();
  if (t.remoteAccess?.privateKey.kind === 'pem') t.remoteAccess.privateKey.pem.dispose();
  t.wireguard?.privateKey?.dispose();
  for (const p of t.peers) p.presharedKey?.dispose();
  for (const tu of t.tunnels) {
    const a = tu.auth;
    if (a.method === 'psk') a.psk.dispose();
    else if (a.method === 'eap') {
      a.eapSecret.dispose();
      if (a.privateKey?.kind === 'pem') a.privateKey.pem.dispose();
    } else if (a.privateKey.kind === 'pem') a.privateKey.pem.dispose();
  }
}

/**
 * The tenant's WireGuard key kept by the vrouter (`wg genkey` format, 0600), created on first
 * use. Only the public key ever leaves the process.
 */
export function loadOrCreateWireguardKey(path: string): { secret: Secret; publicKey: string } {
  let text: Buffer | undefined;
  try {
    text = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CvlanError('CVLAN_ERR_KEY', `cannot read the WireGuard key ${path}: ${(e as Error).message}`, { cause: e });
    }
  }
  if (text !== undefined) {
    try {
      const k = decodeKey(text.toString('latin1'));
      try {
        return { secret: Secret.fromBytes(k.bytes, 'state'), publicKey: encodeKey(publicKeyOf(k.bytes)) };
      } finally {
        k.dispose();
      }
    } catch (e) {
      throw new CvlanError('CVLAN_ERR_KEY', `the WireGuard key ${path} is not a key in \`wg genkey\` format`, { cause: e });
    } finally {
      sodium.sodium_memzero(text);
    }
  }
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const k = generatePrivateKey();
  const out = Buffer.from(`${encodeKey(k.bytes)}\n`, 'latin1');
  try {
    let fd: number;
    try {
      fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateWireguardKey(path);
      throw new CvlanError('CVLAN_ERR_KEY', `cannot create the WireGuard key ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      writeSync(fd, out);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return { secret: Secret.fromBytes(k.bytes, 'state'), publicKey: encodeKey(publicKeyOf(k.bytes)) };
  } finally {
    sodium.sodium_memzero(out);
    k.dispose();
  }
}

/** Reads a JSON file; a syntax error is reported as `FILE:LINE:COLUMN` with the parser's reason. */
export function readJsonFile(path: string): unknown {
  return readJsonFileWithLines(path).doc;
}

/** A parsed JSON document and the line of each of its values (see `jsonValueLines`). */
export interface JsonWithLines {
  doc: unknown;
  lines: Map<string, number>;
}

/** `readJsonFile` that also returns where each value is, so issues can name their line. */
export function readJsonFileWithLines(path: string): JsonWithLines {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([{ path, reason: `cannot read: ${(e as Error).message}` }]);
  }
  return parseJsonWithLines(text, path);
}

export function parseJsonWithLines(text: string, file: string): JsonWithLines {
  let doc: unknown;
  try {
    doc = JSON.parse(text) as unknown;
  } catch (e) {
    // V8 gives a character offset at best ("... at position 123"), often only a snippet; the
    // scanner below finds the place itself so the error can name a line and column.
    let offset: number;
    let reason: string;
    try {
      jsonValueLines(text);
      const m = / at position (\d+)/.exec((e as Error).message);
      offset = m ? Number(m[1]) : text.length;
      reason = (e as Error).message.replace(/ in JSON at position \d+.*$/, '');
    } catch (syntax) {
      if (!(syntax instanceof JsonSyntaxError)) throw syntax;
      offset = syntax.offset;
      reason = syntax.message;
    }
    const { line, column } = lineColumn(text, offset);
    throw new ConfigError([{ path: `${file}:${line}:${column}`, reason: `JSON syntax error: ${reason}` }]);
  }
  return { doc, lines: jsonValueLines(text) };
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  return { line: before.split('\n').length, column: offset - before.lastIndexOf('\n') };
}

class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

// eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings
const JSON_STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const JSON_LITERAL = /true|false|null/y;

/**
 * Line (1-based) of every value of a JSON text, by the validator's path syntax
 * (`tenants[1].wireguard_peers[0].public_key`; the root is `(document)`). A member's line is
 * the line of its key. Throws JsonSyntaxError at the first offset that is not JSON (RFC 8259).
 */
export function jsonValueLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let i = 0;
  let line = 1;
  const shown = (): string => (i >= text.length ? 'end of input' : JSON.stringify(text[i]));
  const fail = (expected: string): never => {
    throw new JsonSyntaxError(`unexpected ${shown()}, expected ${expected}`, i);
  };
  const space = (): void => {
    for (; i < text.length; i++) {
      const c = text[i];
      if (c === '\n') line++;
      else if (c !== ' ' && c !== '\t' && c !== '\r') return;
    }
  };
  // JSON strings hold no raw line breaks: only whitespace moves the line.
  const token = (re: RegExp, what: string): string => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) fail(what);
    i += m![0].length;
    return m![0];
  };
  const punct = (c: string, what: string): void => {
    space();
    if (text[i] !== c) fail(what);
    i++;
  };
  const value = (path: string, at: number, depth: number): void => {
    if (depth > 512) fail('less nesting');
    out.set(path || '(document)', at);
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      space();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        space();
        const keyLine = line;
        const key = JSON.parse(token(JSON_STRING, 'a property name in double quotes')) as string;
        punct(':', "':' after the property name");
        space();
        value(path ? `${path}.${key}` : key, keyLine, depth + 1);
        space();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else fail("',' or '}'");
      }
    } else if (c === '[') {
      i++;
      space();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let k = 0; ; k++) {
        space();
        value(`${path}[${k}]`, line, depth + 1);
        space();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail("',' or ']'");
      }
    } else if (c === '"') token(JSON_STRING, 'a string (control characters escaped)');
    else if (c === 't' || c === 'f' || c === 'n') token(JSON_LITERAL, 'true, false or null');
    else token(JSON_NUMBER, 'a value');
  };
  space();
  value('', line, 0);
  space();
  if (i < text.length) fail('end of input');
  return out;
}

/** The line of the value an issue path names, or of its nearest enclosing value that exists. */
export function lineOfPath(lines: Map<string, number>, path: string): number | undefined {
  for (let p = path; ; ) {
    const l = lines.get(p || '(document)');
    if (l !== undefined) return l;
    if (p === '') return undefined;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut < 0 ? '' : p.slice(0, cut);
  }
}

/**
 * Replaces `${NAME}` in every string of `doc` with `vars[NAME]` (a deep copy; `doc` is not
 * changed). Names without a value stay as they are and the validator reports them.
 */
export function substitutePlaceholders<T>(doc: T, vars: Readonly<Record<string, string>>): T {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    if (typeof v === 'string') {
      return v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string) => (Object.prototype.hasOwnProperty.call(vars, name) ? vars[name]! : m));
    }
    return v;
  };
  return walk(doc) as T;
}

/** Standalone mode: the controller JSON from a file, with optional placeholder values. */
export function loadStandalone(path: string, opts: Omit<LoadOptions, 'controllerDocs'> & { vars?: Record<string, string> } = {}): DesiredState {
  const { vars, ...rest } = opts;
  const doc = readJsonFile(path);
  return loadDesiredState({ ...rest, controllerDocs: [vars ? substitutePlaceholders(doc, vars) : doc] });
}

/** Placeholders of the embedded demo document, filled in by the demo before validation. */
export const DEMO_PLACEHOLDERS = ['DEMO_PSK', 'VROUTER_WG_PRIVATE_KEY', 'AGENT_PUBLIC_KEY'] as const;

/** A fresh copy of the embedded demo document (placeholders left in). */
export function demoDefaultDocument(): unknown {
  return substitutePlaceholders(demoDocument, {});
}

/** The embedded demo document with its placeholders filled in, validated. */
export function loadDemoDefault(vars: Record<(typeof DEMO_PLACEHOLDERS)[number], string>, opts: Omit<LoadOptions, 'controllerDocs'> = {}): DesiredState {
  return loadDesiredState({ stateDir: null, ...opts, controllerDocs: [substitutePlaceholders(demoDocument, vars)] });
}

function canonical(v: unknown, key: Buffer): unknown {
  if (v instanceof Secret) return { secret: v.keyedDigest(key) };
  if (Array.isArray(v)) return v.map((x) => canonical(x, key));
  if (isObj(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = canonical(v[k], key);
    return out;
  }
  return v;
}

/**
 * A stable version of the state: SHA-256 over its canonical JSON (sorted keys), where each
 * secret stands as a BLAKE2b digest keyed by a key derived from the secrets key, so a changed
 * PSK changes the version but the version reveals nothing about the PSK. Without a secrets key
 * the digest key is per process: versions then agree only within one run.
 */
export function configVersion(state: DesiredState): string {
  const key = versionKeys.get(state) ?? processVersionKey;
  return createHash('sha256').update(JSON.stringify(canonical(state, key))).digest('hex');
}
