/**
 * A throw-away X.509 PKI made with strongSwan's `pki` tool at test time: one CA and end-entity
 * certificates whose subjectAltName is the IKE identity, so charon matches `id = <name>` against
 * the certificate. ECDSA P-256 keeps generation fast. Files (PEM) live in the lab's private dir.
 */
import type { Lab } from './lab.js';
import { run } from './exec.js';
import { tools } from './tools.js';

export interface PkiEntity {
  /** PEM certificate and private key paths. */
  cert: string;
  key: string;
}

export interface Pki {
  /** PEM CA certificate path. */
  ca: string;
  /** PEM path of the CA's private key (to sign CRLs). */
  caKey: string;
  entities: Record<string, PkiEntity>;
}

async function pki(args: string[], input?: string): Promise<string> {
  return (await run(tools.pki, args, { ...(input !== undefined ? { input } : {}), timeoutMs: 20_000 })).stdout;
}

/** A CA named `CN=<caName>` and one certificate per identity in `names` (FQDNs), signed by it. */
export async function makePki(lab: Lab, names: string[], caName = 'cvlan test CA'): Promise<Pki> {
  const caKey = await pki(['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']);
  // Several CAs in one lab keep apart by name.
  const tag = caName === 'cvlan test CA' ? 'ca' : caName.replace(/[^A-Za-z0-9]+/g, '-');
  const caKeyPath = lab.writeFile(`pki-${tag}.key.pem`, caKey);
  const caCert = await pki(['--self', '--ca', '--lifetime', '2', '--in', caKeyPath, '--type', 'ecdsa', '--dn', `CN=${caName}`, '--outform', 'pem']);
  const ca = lab.writeFile(`pki-${tag}.pem`, caCert, 0o644);
  const entities: Record<string, PkiEntity> = {};
  for (const name of names) {
    const key = lab.writeFile(`pki-${name}.key.pem`, await pki(['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']));
    const cert = await pki(
      ['--issue', '--lifetime', '2', '--cacert', ca, '--cakey', caKeyPath, '--type', 'priv', '--in', key, '--dn', `CN=${name}`, '--san', name, '--outform', 'pem'],
    );
    entities[name] = { cert: lab.writeFile(`pki-${name}.pem`, cert, 0o644), key };
  }
  return { ca, caKey: caKeyPath, entities };
}

