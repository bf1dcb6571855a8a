/**
 * Remote-access clients: one strongSwan charon with kernel-libipsec in a namespace, holding one
 * connection per client identity, each from its own source address and asking for a virtual IP
 * (`vips = 0.0.0.0, ::`), as a laptop's or phone's IKEv2 client does. DNS servers it receives are
 * written to its own resolv.conf file (the resolve plugin, pointed away from /etc). Private /run
 * and own VICI socket, as `strongswan.ts`.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './lab.js';
import type { LabProcess } from './process.js';
import { run, type RunResult } from './exec.js';
import { randomSuffix } from './names.js';
import { swanctlSecret } from './strongswan.js';
import { tools } from './tools.js';

export interface IkeClient {
  /** Connection name in swanctl.conf. */
  name: string;
  /** Source address (must be on an interface of the namespace). */
  localAddr: string;
  /** Our IKE identity: the EAP user name, or the certificate's SAN. */
  id: string;
  /** Device certificate and key (PEM paths): authenticate with it (first round). */
  cert?: { cert: string; key: string };
  /** EAP-MSCHAPv2 login (after the certificate when both are given: RFC 4739). */
  eap?: { user: string; secret: string };
  /** Families to ask an address for. Default both. */
  vips?: string[];
}

export interface IkeClients {
  ns: string;
  process: LabProcess;
  swanctl(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** Initiates a client's CHILD_SA; resolves with swanctl's output, rejects when it failed. */
  initiate(name: string, timeoutSeconds?: number): Promise<string>;
  terminate(name: string): Promise<void>;
  /** A client's virtual IPs as charon lists them (empty when it has no IKE_SA). */
  vips(name: string): Promise<string[]>;
  /** The resolv.conf the resolve plugin writes. */
  resolvConf(): string;
}

export async function ikeClients(lab: Lab, ns: string, o: { server: string; serverId: string; ca: string; remoteTs: string[]; clients: IkeClient[] }): Promise<IkeClients> {
  const dir = join(lab.dir, `ike-clients-${randomSuffix(4)}`);
  for (const sub of ['', 'x509', 'x509ca', 'private']) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  const viciPath = join(dir, 'charon.vici');
  const vici = `unix://${viciPath}`;
  const resolv = join(dir, 'resolv.conf');
  writeFileSync(resolv, '');
  copyFileSync(o.ca, join(dir, 'x509ca', 'ca.pem'));
  // A blocking `swanctl --initiate` holds one of charon's worker threads until its CHILD_SA is up
  // (or its timeout passes). With the default 16 threads (about 8 of them for jobs) 8+ clients
  // initiating at once hold every worker: no thread is left to process the server's answers, and
  // the client stalls until the initiate timeouts free them. One thread per client on top.
  const conf = `charon {
  load_modular = yes
  threads = ${16 + o.clients.length}
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
    resolve {
      file = ${resolv}
    }
    vici {
      socket = ${vici}
    }
  }
  filelog {
    stderr {
      path = stderr
      default = 1
      time_format = %H:%M:%S
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
`;
  const confPath = join(dir, 'strongswan.conf');
  writeFileSync(confPath, conf, { mode: 0o600 });
  const conns: string[] = [];
  const secrets: string[] = [];
  for (const c of o.clients) {
    const rounds: string[] = [];
    if (c.cert) {
      const cert = `${c.name}.pem`;
      copyFileSync(c.cert.cert, join(dir, 'x509', cert));
      copyFileSync(c.cert.key, join(dir, 'private', `${c.name}.key`));
      rounds.push(`    local-1 {\n      auth = pubkey\n      id = ${c.id}\n      certs = ${cert}\n    }`);
    }
    if (c.eap) {
      rounds.push(`    local-${rounds.length + 1} {\n      auth = eap-mschapv2\n      id = ${c.id}\n      eap_id = ${c.eap.user}\n    }`);
      secrets.push(`  eap-${c.name} {\n    id = ${c.eap.user}\n    secret = "${swanctlSecret(c.eap.secret)}"\n  }`);
    }
    conns.push(`  ${c.name} {
    version = 2
    local_addrs = ${c.localAddr}
    remote_addrs = ${o.server}
    vips = ${(c.vips ?? ['0.0.0.0', '::']).join(', ')}
    proposals = aes256gcm16-prfsha256-x25519
${rounds.join('\n')}
    remote {
      auth = pubkey
      id = ${o.serverId}
    }
    children {
      ${c.name} {
        remote_ts = ${o.remoteTs.join(',')}
        esp_proposals = aes256gcm16
      }
    }
  }`);
  }
  writeFileSync(join(dir, 'swanctl.conf'), `connections {\n${conns.join('\n')}\n}\nsecrets {\n${secrets.join('\n')}\n}\n`, { mode: 0o600 });
  const process = lab.spawn(`charon-clients@${ns}`, tools.charon, [], { ns, privateRun: true, env: { STRONGSWAN_CONF: confPath } });
  const swanctl = (args: string[], timeoutMs = 20_000): Promise<RunResult> =>
    run(tools.swanctl, [...args, '--uri', vici], { ns, timeoutMs, env: { STRONGSWAN_CONF: confPath, SWANCTL_DIR: dir } });
  await process.waitReady({ socket: viciPath, probe: async () => (await swanctl(['--stats'], 3000).catch(() => undefined)) !== undefined, timeoutMs: 15_000 });
  await swanctl(['--load-all', '--file', join(dir, 'swanctl.conf')]);
  return {
    ns,
    process,
    swanctl,
    initiate: async (name, timeoutSeconds = 15) => {
      const r = await swanctl(['--initiate', '--child', name, '--timeout', String(timeoutSeconds)], (timeoutSeconds + 5) * 1000);
      if (!/initiate completed successfully/.test(r.stdout)) throw new Error(`initiate ${name}: ${r.stdout}`);
      return r.stdout;
    },
    terminate: async (name) => {
      await swanctl(['--terminate', '--ike', name, '--timeout', '5']);
    },
    vips: async (name) => {
      const r = await swanctl(['--list-sas', '--ike', name]).catch(() => undefined);
      const m = /local\s+'[^']*' @ \S+(?:\[\d+\])? \[([^\]]+)\]/.exec(r?.stdout ?? '');
      return m ? m[1]!.split(/\s+/).filter((x) => x.length > 0) : [];
    },
    resolvConf: () => readFileSync(resolv, 'utf8'),
  };
}

