/**
 * `cvlan-vrouter init --controller URL --token T [--ca FILE] [--config-dir DIR] [--state-dir DIR]`:
 * registers this vrouter with its controller (a key pair made here; only the public key leaves),
 * stores the credential (0600, `<state dir>/controller/credential.json`), writes the `[controller]`
 * section of `<config dir>/vrouter.toml` and enables the systemd unit when one is installed.
 *
 * Idempotent: run again with the same token and URL (cloud-init repeats user-data), it finds the
 * credential and does not register again. Exit codes (INIT_EXIT) tell a bad token from an
 * unreachable controller, a certificate that does not verify and a controller of another API version.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CvlanError, ConfigError } from '../errors.js';
import { DEFAULT_LOCAL_TOML, DEFAULT_STATE_DIR, parseLocalToml } from '../config/local.js';
import { ControllerClient } from '../controller/client.js';
import { loadOrCreateSealKeypair, SECRETS_KEY_FILE } from '../secrets/sealed.js';
import { CREDENTIAL_FILE, readCredential, tokenDigest, writeCredential } from '../controller/credential.js';

export const INIT_EXIT = {
  ok: 0,
  usage: 2,
  badToken: 3,
  unreachable: 4,
  tls: 5,
  apiVersion: 6,
  protocol: 7,
  local: 8,
} as const;

const USAGE = `usage: cvlan-vrouter init --controller URL --token TOKEN [options]
  --controller URL     the controller, https://host[:port][/prefix]
  --token TOKEN        the one-time registration token from the controller
  --ca FILE            PEM CA the controller's certificate must chain to (default: system trust store)
  --config-dir DIR     where vrouter.toml is written (default /etc/cvlan)
  --state-dir DIR      where the credential is kept (default: [state] dir of vrouter.toml, else ${DEFAULT_STATE_DIR})
  --no-enable          do not enable the systemd unit
exit codes: 0 registered (or already), 2 usage, 3 bad token, 4 controller unreachable,
            5 TLS verification failed, 6 other API version, 7 protocol error, 8 local files
`;

export interface InitOutput {
  out(line: string): void;
  err(line: string): void;
}

const stdio: InitOutput = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

/**
 * The file's text with `url`, `ca` and `credential_file` of its `[controller]` table replaced by
 * `keys` (the table's other keys, the other tables and comments kept).
 */
export function withControllerSection(text: string, keys: string[]): string {
  const out: string[] = [];
  const kept: string[] = [];
  let inController = false;
  for (const line of text.split(/\r?\n/)) {
    const header = /^\s*\[\s*([A-Za-z0-9_."-]+)\s*\]/.exec(line);
    if (header) inController = header[1] === 'controller';
    if (!inController) out.push(line);
    else if (!header && line.trim() !== '' && !/^\s*(url|ca|credential_file)\s*=/.test(line)) kept.push(line);
  }
  while (out.length > 0 && out[out.length - 1]!.trim() === '') out.pop();
  return `${out.length ? `${out.join('\n')}\n\n` : ''}${['[controller]', ...keys, ...kept].join('\n')}\n`;
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

function enableUnit(o: InitOutput): void {
  let units = '';
  try {
    units = execFileSync('systemctl', ['list-unit-files', '--no-legend', 'cvlan-vrouter.service'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return; // no systemctl, or no systemd running (a container): nothing to enable
  }
  if (!units.includes('cvlan-vrouter.service')) return;
  try {
    execFileSync('systemctl', ['enable', 'cvlan-vrouter.service'], { stdio: ['ignore', 'ignore', 'pipe'] });
    o.out('enabled cvlan-vrouter.service');
  } catch (e) {
    o.err(`warning: systemctl enable cvlan-vrouter.service failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
  }
}

function exitFor(e: unknown): number {
  const code = e instanceof CvlanError ? e.code : undefined;
  switch (code) {
    case 'CVLAN_ERR_CONTROLLER_TOKEN':
    case 'CVLAN_ERR_CONTROLLER_CREDENTIAL':
      return INIT_EXIT.badToken;
    case 'CVLAN_ERR_CONTROLLER_UNREACHABLE':
      return INIT_EXIT.unreachable;
    case 'CVLAN_ERR_CONTROLLER_TLS':
      return INIT_EXIT.tls;
    case 'CVLAN_ERR_CONTROLLER_VERSION':
      return INIT_EXIT.apiVersion;
    case 'CVLAN_ERR_CONTROLLER_PROTOCOL':
      return INIT_EXIT.protocol;
    case 'CVLAN_ERR_CONFIG':
      return INIT_EXIT.usage;
    default:
      return INIT_EXIT.local;
  }
}

export async function init(argv: string[], o: InitOutput = stdio): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        controller: { type: 'string' },
        token: { type: 'string' },
        ca: { type: 'string' },
        'config-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        'no-enable': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    o.err(`cvlan-vrouter init: ${(e as Error).message}`);
    o.err(USAGE);
    return INIT_EXIT.usage;
  }
  if (values.help) {
    o.out(USAGE);
    return INIT_EXIT.ok;
  }
  const missing = (['controller', 'token'] as const).filter((k) => !values[k]);
  if (missing.length) {
    o.err(`cvlan-vrouter init: missing ${missing.map((m) => `--${m}`).join(' and ')}`);
    o.err(USAGE);
    return INIT_EXIT.usage;
  }
  const url = values.controller!;
  const token = values.token!;
  const configDir = resolve(values['config-dir'] ?? resolve(DEFAULT_LOCAL_TOML, '..'));
  const tomlPath = join(configDir, 'vrouter.toml');
  try {
    const existing = existsSync(tomlPath) ? readFileSync(tomlPath, 'utf8') : '';
    const stateDir = resolve(values['state-dir'] ?? (existing ? parseLocalToml(existing, tomlPath).state.dir : DEFAULT_STATE_DIR));
    let ca: string | undefined;
    let caPath: string | undefined;
    if (values.ca !== undefined) {
      try {
        ca = readFileSync(values.ca, 'utf8');
      } catch (e) {
        throw new CvlanError('CVLAN_ERR_CONFIG', `--ca ${values.ca}: ${(e as Error).message}`, { cause: e });
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new CvlanError('CVLAN_ERR_CONFIG', `--ca ${values.ca}: not a PEM certificate`);
      caPath = join(configDir, 'controller-ca.pem');
    }
    const credentialPath = join(stateDir, CREDENTIAL_FILE);
    const client = new ControllerClient({ url, ...(ca !== undefined ? { ca } : {}) });

    const held = readCredential(credentialPath);
    let vrouterId: string;
    if (held && held.url === url && held.tokenSha256 === tokenDigest(token)) {
      vrouterId = held.vrouterId;
      o.out(`already registered with ${url} as ${vrouterId}; not registering again`);
    } else {
      const seal = loadOrCreateSealKeypair(join(stateDir, SECRETS_KEY_FILE));
      const cred = await client.register(token, { hostname: hostname(), secretsPublicKey: seal.publicKey });
      writeCredential(credentialPath, { ...cred, tokenSha256: tokenDigest(token) });
      vrouterId = cred.vrouterId;
      o.out(`registered with ${url} as ${vrouterId}; credential in ${credentialPath} (expires ${cred.expiresAt})`);
    }

    mkdirSync(configDir, { recursive: true, mode: 0o755 });
    if (caPath !== undefined && resolve(values.ca!) !== caPath) copyFileSync(values.ca!, caPath);
    const keys = [`url = ${tomlString(url)}`, ...(caPath !== undefined ? [`ca = ${tomlString(caPath)}`] : []), `credential_file = ${tomlString(credentialPath)}`];
    const stateTable = values['state-dir'] !== undefined && !/^\s*\[\s*state\s*\]/m.test(existing) ? `\n[state]\ndir = ${tomlString(stateDir)}\n` : '';
    const text = withControllerSection(existing, keys) + stateTable;
    parseLocalToml(text, tomlPath); // never write a file the daemon would refuse
    writeFileSync(`${tomlPath}.tmp`, text, { mode: 0o644 });
    renameSync(`${tomlPath}.tmp`, tomlPath);
    o.out(`wrote [controller] to ${tomlPath}`);
    if (!values['no-enable']) enableUnit(o);
    return INIT_EXIT.ok;
  } catch (e) {
    const msg = e instanceof ConfigError ? e.message : e instanceof CvlanError ? `${e.code}: ${e.message}` : (e as Error).message;
    o.err(`cvlan-vrouter init: ${msg}`);
    return exitFor(e);
  }
}
