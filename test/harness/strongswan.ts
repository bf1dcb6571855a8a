/**
 * strongSwan charon with kernel-libipsec as the "legacy router": a peer nobody here wrote that does
 * ESP in userspace (this kernel has no ESP). Each instance runs in its own mount namespace with a
 * private /run (charon ignores `piddir` and always writes /var/run/charon.pid) and its own VICI
 * socket in the lab's temp dir, so several charons share the machine.
 */
import { mkdirSync, writeFileSync, copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { LabError } from './errors.js';
import { run, type RunResult } from './exec.js';
import { randomSuffix } from './names.js';
import { tools } from './tools.js';

export type StrongswanAuth =
  | { method: 'psk'; psk: string }
  /** X.509: PEM files copied into the instance's swanctl dir. */
  | { method: 'pubkey'; cert: string; key: string; caCerts?: string[] }
  /** EAP as client (`eap-md5`, `eap-mschapv2`, ...) with username/password; the server side uses `server: true`. */
  | { method: 'eap'; eapType: string; identity: string; secret: string; server?: boolean; serverCert?: string; serverKey?: string; caCerts?: string[] };

export interface StrongswanOptions {
  /** Underlay address charon uses (`local_addrs`). */
  localAddr: string;
  /** Peer's underlay address (`remote_addrs`); `%any` for a responder that takes anyone. */
  remoteAddr: string;
  /** IKE identities. Default: the addresses. */
  localId?: string;
  remoteId?: string;
  /** Traffic selectors (CIDR lists). */
  localTs: string[];
  remoteTs: string[];
  auth: StrongswanAuth;
  /** `auth =` the peer must use, when it should differ from what `auth` implies (a refused peer). */
  remoteAuth?: string;
  /** IKE proposals. Default `aes256gcm16-prfsha256-x25519`. */
  ikeProposals?: string;
  /** ESP proposals. Default `aes256gcm16`. */
  espProposals?: string;
  /** `start_action` of the CHILD_SA: `none` (initiate by hand), `start`, `trap`. Default `none`. */
  startAction?: 'none' | 'start' | 'trap';
  /** IKE_SA and CHILD_SA rekey times (swanctl syntax, e.g. `20s`). Default charon's (4h / 1h). */
  ikeRekeyTime?: string;
  childRekeyTime?: string;
  /** Dead-peer detection interval (swanctl syntax, e.g. `2s`) and what to do then (`restart`: initiate again). Default off. */
  dpdDelay?: string;
  dpdAction?: 'clear' | 'trap' | 'restart';
  /** Force UDP encapsulation (ESP-in-UDP on 4500) even without NAT. Default false. */
  forceEncap?: boolean;
  /** Extra lines inside `charon { }` of strongswan.conf. */
  extraCharonConf?: string;
  /** charon log level for all subsystems (-1..4). Default 1. */
  logLevel?: number;
  /** Readiness timeout, ms. Default 15 000. */
  timeoutMs?: number;
}

export interface SaEntry {
  name: string;
  state: string;
}

export interface SaList {
  ike: SaEntry[];
  child: SaEntry[];
  raw: string;
}

export interface StrongswanPeer {
  ns: string;
  process: LabProcess;
  /** `unix://` URI of this instance's VICI socket. */
  vici: string;
  dir: string;
  /** Connection and CHILD_SA name in swanctl.conf. */
  name: string;
  /** Runs `swanctl <args> --uri <vici>` in the peer's namespace. */
  swanctl(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** Initiates the CHILD_SA (and the IKE_SA under it); resolves when swanctl reports success. */
  initiate(timeoutSeconds?: number): Promise<void>;
  listSas(): Promise<SaList>;
}

function authSection(side: 'local' | 'remote', auth: StrongswanAuth, id: string): string {
  const lines = [`id = ${id}`];
  if (auth.method === 'psk') lines.push('auth = psk');
  else if (auth.method === 'pubkey') {
    lines.push('auth = pubkey');
    if (side === 'local') lines.push(`certs = ${basename(auth.cert)}`);
  } else if (auth.server) {
    // the EAP server authenticates itself with a certificate and asks the client for EAP
    if (side === 'local') lines.push('auth = pubkey', `certs = ${basename(auth.serverCert ?? '')}`);
    else lines.push(`auth = ${auth.eapType}`, `eap_id = %any`);
  } else if (side === 'local') lines.push(`auth = ${auth.eapType}`, `eap_id = ${auth.identity}`);
  else lines.push('auth = pubkey');
  return lines.map((l) => `      ${l}`).join('\n');
}

/**
 * A secret as swanctl.conf's `secret` value, exactly: swanctl decodes a value that starts with `0x`
 * (hex) or `0s` (base64), which a random base64 secret does once in 2048, so every value is given
 * base64-encoded with the prefix.
 */
export function swanctlSecret(value: string): string {
  return `0s${Buffer.from(value, 'utf8').toString('base64')}`;
}

function secretsSection(o: StrongswanOptions, localId: string, remoteId: string): string {
  const a = o.auth;
  if (a.method === 'psk') {
    return `  ike-lab {\n    id-1 = ${localId}\n    id-2 = ${remoteId}\n    secret = "${swanctlSecret(a.psk)}"\n  }\n`;
  }
  if (a.method === 'eap') return `  eap-lab {\n    id = ${a.identity}\n    secret = "${swanctlSecret(a.secret)}"\n  }\n`;
  return '';
}

/** Starts charon with kernel-libipsec in `ns`, loads the connection, and returns a handle. */
export async function strongswanPeer(lab: Lab, ns: string, o: StrongswanOptions): Promise<StrongswanPeer> {
  const name = 'lab';
  const dir = join(lab.dir, `strongswan-${randomSuffix(4)}`);
  for (const sub of ['', 'x509', 'x509ca', 'private', 'conf.d']) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  const viciPath = join(dir, 'charon.vici');
  const vici = `unix://${viciPath}`;
  const localId = o.localId ?? o.localAddr;
  const remoteId = o.remoteId ?? o.remoteAddr;
  const lvl = o.logLevel ?? 1;

  if (o.auth.method === 'pubkey') {
    copyFileSync(o.auth.cert, join(dir, 'x509', basename(o.auth.cert)));
    copyFileSync(o.auth.key, join(dir, 'private', basename(o.auth.key)));
    for (const ca of o.auth.caCerts ?? []) copyFileSync(ca, join(dir, 'x509ca', basename(ca)));
  } else if (o.auth.method === 'eap' && o.auth.server && o.auth.serverCert !== undefined && o.auth.serverKey !== undefined) {
    copyFileSync(o.auth.serverCert, join(dir, 'x509', basename(o.auth.serverCert)));
    copyFileSync(o.auth.serverKey, join(dir, 'private', basename(o.auth.serverKey)));
  }
  if (o.auth.method === 'eap') for (const ca of o.auth.caCerts ?? []) copyFileSync(ca, join(dir, 'x509ca', basename(ca)));

  // Debian's plugin set (load_modular with the packaged per-plugin files), then the overrides that
  // make a userspace-ESP peer work here: kernel-libipsec on; bypass-lan off (it would route the
  // underlay into ipsec0 and IKE would never get through); ha off.
  const strongswanConf = `charon {
  load_modular = yes
  plugins {
    include /etc/strongswan.d/charon/*.conf
  }
  plugins {
    kernel-libipsec {
      load = yes
    }
    bypass-lan {
      load = no
    }
    ha {
      load = no
    }
    vici {
      socket = ${vici}
    }
  }
  filelog {
    stderr {
      path = stderr
      default = ${lvl}
      ike = ${lvl}
      time_format = %H:%M:%S
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
${o.extraCharonConf ?? ''}
}
`;
  const confPath = join(dir, 'strongswan.conf');
  writeFileSync(confPath, strongswanConf, { mode: 0o600 });

  // one key = value per line: swanctl rejects several on a line
  const swanctlConf = `connections {
  ${name} {
    version = 2
    local_addrs = ${o.localAddr}
    remote_addrs = ${o.remoteAddr}
    proposals = ${o.ikeProposals ?? 'aes256gcm16-prfsha256-x25519'}
    encap = ${o.forceEncap ? 'yes' : 'no'}
${o.ikeRekeyTime ? `    rekey_time = ${o.ikeRekeyTime}
` : ''}${o.dpdDelay ? `    dpd_delay = ${o.dpdDelay}
` : ''}    local {
${authSection('local', o.auth, localId)}
    }
    remote {
${o.remoteAuth !== undefined ? `      id = ${remoteId}\n      auth = ${o.remoteAuth}` : authSection('remote', o.auth, remoteId)}
    }
    children {
      ${name} {
        local_ts = ${o.localTs.join(',')}
        remote_ts = ${o.remoteTs.join(',')}
        esp_proposals = ${o.espProposals ?? 'aes256gcm16'}
        start_action = ${o.startAction ?? 'none'}
${o.childRekeyTime ? `        rekey_time = ${o.childRekeyTime}
` : ''}${o.dpdAction ? `        dpd_action = ${o.dpdAction}
` : ''}      }
    }
  }
}
secrets {
${secretsSection(o, localId, remoteId)}}
`;
  writeFileSync(join(dir, 'swanctl.conf'), swanctlConf, { mode: 0o600 });

  const process = lab.spawn(`charon@${ns}`, tools.charon, [], {
    ns,
    privateRun: true,
    env: { STRONGSWAN_CONF: confPath },
  });
  const swanctl = (args: string[], timeoutMs = 15_000): Promise<RunResult> =>
    run(tools.swanctl, [...args, '--uri', vici], {
      ns,
      timeoutMs,
      env: { STRONGSWAN_CONF: confPath, SWANCTL_DIR: dir },
    });
  await process.waitReady({
    socket: viciPath,
    probe: async () => (await swanctl(['--stats'], 3000).catch(() => undefined)) !== undefined,
    timeoutMs: o.timeoutMs ?? 15_000,
  });
  await swanctl(['--load-all', '--file', join(dir, 'swanctl.conf')]);

  const listSas = async (): Promise<SaList> => {
    const r = await swanctl(['--list-sas']);
    const ike: SaEntry[] = [];
    const child: SaEntry[] = [];
    for (const line of r.stdout.split('\n')) {
      const m = /^(\s*)([\w.-]+): #\d+, (?:reqid \d+, )?([A-Z_]+)/.exec(line);
      if (m === null) continue;
      ((m[1] ?? '').length === 0 ? ike : child).push({ name: m[2] as string, state: m[3] as string });
    }
    return { ike, child, raw: r.stdout };
  };

  return {
    ns,
    process,
    vici,
    dir,
    name,
    swanctl,
    listSas,
    initiate: async (timeoutSeconds = 15) => {
      const r = await swanctl(['--initiate', '--child', name, '--timeout', String(timeoutSeconds)], (timeoutSeconds + 5) * 1000).catch(
        (err: unknown) => {
          throw new LabError('CVLAN_LAB_COMMAND', `swanctl --initiate failed\n${process.lastOutput(40)}`, { cause: err });
        },
      );
      if (!/initiate completed successfully/.test(r.stdout)) {
        throw new LabError('CVLAN_LAB_COMMAND', `swanctl --initiate: ${r.stdout}\n${process.lastOutput(40)}`);
      }
    },
  };
}
