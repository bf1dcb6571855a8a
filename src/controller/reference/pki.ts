/**
 * A throw-away certificate authority and server certificate for the reference controller and
 * the tests, made with openssl(1) (node:crypto verifies certificates but cannot issue them).
 * Never for production: the CA key sits next to the certificates.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

export interface Pki {
  /** PEM of the CA certificate (what a vrouter pins with --ca). */
  ca: string;
  caFile: string;
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Creates (or reuses, when `dir` already holds one) a CA and a server certificate whose
 * subjectAltName lists `names` (IP addresses or DNS names).
 */
export function makePki(dir: string, names: string[] = ['127.0.0.1', 'localhost']): Pki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n: string): string => join(dir, n);
  if (!existsSync(f('server.pem'))) {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key')]);
    openssl(['req', '-x509', '-new', '-key', f('ca.key'), '-subj', '/CN=cvlan reference controller test CA', '-days', '30', '-out', f('ca.pem')]);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('server.key')]);
    openssl(['req', '-new', '-key', f('server.key'), '-subj', `/CN=${names[0] ?? 'localhost'}`, '-out', f('server.csr')]);
    const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    writeFileSync(f('server.ext'), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
    openssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '30', '-extfile', f('server.ext'), '-out', f('server.pem')]);
  }
  return { ca: readFileSync(f('ca.pem'), 'utf8'), caFile: f('ca.pem'), cert: readFileSync(f('server.pem'), 'utf8'), key: readFileSync(f('server.key'), 'utf8') };
}
