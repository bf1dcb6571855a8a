/**
 * `cvlan-vrouter check --config FILE [--local TOML] [--json]`: validates the controller JSON
 * and the local TOML exactly as `run` would load them, and applies nothing: no device, no
 * charon, no key generated or written (the secrets key is read if it exists, to open sealed
 * values). Each issue names the file and line, then the field and the reason.
 *
 * Exit: 0 valid, 1 invalid, 2 usage error.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, CvlanError, type ConfigIssue } from '../errors.js';
import { configVersion, lineOfPath, loadDesiredState, readJsonFileWithLines } from '../config/load.js';
import { DEFAULT_LOCAL_TOML, loadLocalToml } from '../config/local.js';
import { disposeDesiredState, type LocalConfig } from '../config/model.js';
import { loadOrCreateSealKeypair, SECRETS_KEY_FILE, type SealKeypair } from '../secrets/sealed.js';
import { unsupported } from '../daemon/vrouter.js';
import { EXIT_FAILURE, EXIT_OK, parseCommand, stringOption, UsageError } from './args.js';

export const HELP = `usage: cvlan-vrouter check --config FILE [--local TOML] [--json]

Validates the controller JSON FILE and the local TOML (default ${DEFAULT_LOCAL_TOML}) as
\`run\` would load them, without applying anything. Prints one line per issue:
  FILE:LINE: field: reason

options:
  --config FILE   the controller JSON to check
  --local TOML    the local settings (default ${DEFAULT_LOCAL_TOML}; missing = defaults)
  --json          print {"valid": bool, "issues": [{file, line, path, reason}], ...} instead
  -h, --help      this text

exit codes: 0 valid, 1 invalid, 2 usage error
`;

export interface CheckIssue {
  file: string;
  line: number | null;
  /** The field, in the document's own path syntax; for a syntax error, empty. */
  path: string;
  reason: string;
}

export interface CheckResult {
  valid: boolean;
  issues: CheckIssue[];
  tenants: number;
  version: string | null;
}

/** `FILE:LINE:COL` at the start of a syntax-error path. */
const POSITION = /^(.*):(\d+):(\d+)$/;

function fromTomlIssue(file: string, i: ConfigIssue): CheckIssue {
  const syntax = POSITION.exec(i.path);
  if (syntax) return { file: syntax[1]!, line: Number(syntax[2]), path: '', reason: i.reason };
  // local.ts ends a field's reason with "(at FILE:LINE)".
  const at = / \(at (.*):(\d+)\)$/.exec(i.reason);
  return at ? { file: at[1]!, line: Number(at[2]), path: i.path, reason: i.reason.slice(0, at.index) } : { file, line: null, path: i.path, reason: i.reason.replace(/ \(in [^)]*\)$/, '') };
}

export function check(configFile: string, localFile: string | undefined): CheckResult {
  const issues: CheckIssue[] = [];
  const tomlFile = localFile ?? DEFAULT_LOCAL_TOML;
  let local: LocalConfig | undefined;
  try {
    local = loadLocalToml(tomlFile);
  } catch (e) {
    if (e instanceof ConfigError) issues.push(...e.issues.map((i) => fromTomlIssue(tomlFile, i)));
    else if (e instanceof CvlanError) issues.push({ file: tomlFile, line: null, path: '', reason: e.message });
    else throw e;
  }
  let json;
  try {
    json = readJsonFileWithLines(configFile);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const i of e.issues) {
      const syntax = POSITION.exec(i.path);
      issues.push(syntax ? { file: configFile, line: Number(syntax[2]), path: '', reason: i.reason } : { file: configFile, line: null, path: '', reason: i.reason });
    }
  }
  if (!json) return { valid: false, issues, tenants: 0, version: null };
  // The secrets key opens sealed values; it is read when it exists, never created here.
  let secretsKey: SealKeypair | undefined;
  const keyFile = local ? join(local.state.dir, SECRETS_KEY_FILE) : undefined;
  if (keyFile !== undefined && existsSync(keyFile)) {
    try {
      secretsKey = loadOrCreateSealKeypair(keyFile);
    } catch (e) {
      issues.push({ file: keyFile, line: null, path: '', reason: (e as Error).message });
    }
  }
  try {
    const state = loadDesiredState({ controllerDocs: [json.doc], ...(local ? { localToml: local } : {}), ...(secretsKey ? { secretsKey } : {}), stateDir: null });
    // What `run` accepts as valid but this build cannot apply (IPsec without a listen address, under [ha] without charon_ha).
    for (const i of unsupported(state)?.issues ?? []) {
      const inToml = i.path.startsWith('network.') || i.path === 'ha' || i.path.startsWith('ha.');
      issues.push({ file: inToml ? tomlFile : configFile, line: inToml ? null : (lineOfPath(json.lines, i.path) ?? null), path: i.path, reason: i.reason });
    }
    const result = { valid: issues.length === 0, issues, tenants: state.tenants.length, version: issues.length === 0 ? configVersion(state) : null };
    disposeDesiredState(state);
    return result;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const i of e.issues) issues.push({ file: configFile, line: lineOfPath(json.lines, i.path) ?? null, path: i.path, reason: i.reason });
    return { valid: false, issues, tenants: 0, version: null };
  }
}

export function formatIssue(i: CheckIssue): string {
  return `${i.file}${i.line === null ? '' : `:${i.line}`}: ${i.path ? `${i.path}: ` : ''}${i.reason}`;
}

export async function main(argv: string[], out: { write(s: string): unknown } = process.stdout): Promise<number> {
  const args = parseCommand(
    { name: 'cvlan-vrouter check', help: HELP, options: { config: { type: 'string' }, local: { type: 'string' }, json: { type: 'boolean' } } },
    argv,
    out,
  );
  if (!args) return EXIT_OK;
  const config = stringOption(args.values, 'config');
  if (config === undefined) throw new UsageError('--config FILE is required');
  const r = check(config, stringOption(args.values, 'local'));
  if (args.values.json) out.write(`${JSON.stringify(r, null, 2)}\n`);
  else if (r.valid) out.write(`${config}: valid (${r.tenants} tenant${r.tenants === 1 ? '' : 's'}, version ${r.version!.slice(0, 12)})\n`);
  else out.write(`${r.issues.map(formatIssue).join('\n')}\n${config}: invalid (${r.issues.length} issue${r.issues.length === 1 ? '' : 's'})\n`);
  return r.valid ? EXIT_OK : EXIT_FAILURE;
}
