// Shared plain-data state for the admin API, metrics and vrouterctl tests. The views carry extra,
// undeclared secret fields on purpose (as a careless source might): no response may contain them.

import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StateSnapshot } from '../../src/api/state.js';

export const SECRETS = {
  psk: 'psk-Sup3r-s3cret-value-91c2f',
  eapPassword: 'eap-hunter2-password-77aa',
  wgPrivateKey: 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=',
  wgPresharedKey: 'FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=',
  controllerToken: 'ctl-token-4f1d9a0b3c7e2d58',
  childEncKeyHex: 'deadbeefcafebabe0011223344556677',
} as const;

export function sampleSnapshot(): StateSnapshot {
  const tunnel = {
    id: 'site-a',
    tenant: 'acme',
    type: 'ipsec' as const,
    remote_id: 'legacy.acme.example',
    auth_method: 'psk' as const,
    state: 'up' as const,
    ike_sa: {
      state: 'ESTABLISHED',
      algorithms: { encryption: 'AES_GCM_16_256', integrity: null, prf: 'PRF_HMAC_SHA2_256', dh_group: 'CURVE_25519' },
      established_at: '2026-01-01T00:00:00.000Z',
      rekey_in_s: 3300,
    },
    child_sas: [
      {
        name: 'net',
        spi_in: 'c1a2b3d4',
        spi_out: '0badf00d',
        algorithms: { encryption: 'AES_GCM_16_256', integrity: null, esn: true },
        udp_encap: true,
        local_ts: ['10.10.0.0/16'],
        remote_ts: ['192.168.50.0/24'],
        bytes_in: 123456789,
        bytes_out: 987654,
        packets_in: 100000,
        packets_out: 2000,
        rekey_in_s: 900,
        enc_key: SECRETS.childEncKeyHex,
      },
    ],
    auth: { method: 'psk', psk: SECRETS.psk },
    psk: SECRETS.psk,
    eap_password: SECRETS.eapPassword,
  };
  const down = {
    id: 'site-b',
    tenant: 'globex',
    type: 'ipsec' as const,
    remote_id: '198.51.100.7',
    auth_method: 'eap' as const,
    state: 'connecting' as const,
    ike_sa: null,
    child_sas: [],
    password: SECRETS.eapPassword,
  };
  const peer = {
    public_key: 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=',
    name: 'agent-7',
    tenant: 'acme',
    endpoint: '203.0.113.9:51820',
    allowed_ips: ['10.20.0.2/32', 'fd00:20::2/128'],
    latest_handshake: '2026-01-01T00:00:10.000Z',
    rx_bytes: 4096,
    tx_bytes: 8192,
    persistent_keepalive_s: 25,
    private_key: SECRETS.wgPrivateKey,
    preshared_key: SECRETS.wgPresharedKey,
  };
  return {
    health: { live: true, ready: true, reasons: [] },
    config: { version: 'v42', appliedAt: '2026-01-01T00:00:00.000Z' },
    tenants: [
      { id: 'acme', tunnels: 1, wireguard_peers: 1, tuns: 1, token: SECRETS.controllerToken } as never,
      { id: 'globex', tunnels: 1, wireguard_peers: 0, tuns: 0 },
    ],
    tunnels: [tunnel, down],
    peers: [peer],
    routes: {
      acme: [
        { prefix: '192.168.50.0/24', via: { kind: 'ipsec', id: 'site-a' } },
        { prefix: '10.20.0.2/32', via: { kind: 'wireguard', id: peer.public_key } },
        { prefix: '0.0.0.0/0', via: { kind: 'tun', id: 'cvl-acme0' } },
      ],
      globex: [],
    },
    drops: [
      { reason: 'no_route', count: 17, worker: 0, tenant: 'acme' },
      { reason: 'replay', count: 3, worker: 1, tenant: null },
    ],
    workers: [
      { index: 0, rx_packets: 1000, tx_packets: 990, rx_bytes: 1_500_000, tx_bytes: 1_400_000, batches: 40, restarts: 0, translated: 300, busy_ratio: 0.25, crypto_packets: 900, helped_packets: 100 },
      { index: 1, rx_packets: 500, tx_packets: 480, rx_bytes: 700_000, tx_bytes: 650_000, batches: 20, restarts: 2, translated: 0, busy_ratio: null, crypto_packets: 0, helped_packets: 0 },
    ],
    counters: {
      tunnels_active: [
        { tenant: 'acme', type: 'ipsec', count: 1 },
        { tenant: 'acme', type: 'wireguard', count: 1 },
      ],
      tunnels: [
        { tunnel: 'site-a', bytes_in: 123456789, bytes_out: 987654, packets_in: 100000, packets_out: 2000 },
        { tunnel: 'site-b', bytes_in: 0, bytes_out: 0, packets_in: 0, packets_out: 0 },
      ],
      ike_sa_active: 1,
      child_sa_active: 1,
      ike_rekeys_total: 5,
      child_rekeys_total: 7,
      drops: [
        { reason: 'no_route', count: 17 },
        { reason: 'replay', count: 3 },
        // A reason outside the enum must not become a label value of its own.
        { reason: 'from 10.1.2.3' as never, count: 1 },
      ],
      handshakes: [
        { tenant: 'acme', result: 'success', count: 9 },
        { tenant: 'globex', result: 'auth_failure', count: 4 },
      ],
      workers: [
        { worker: 0, rx_packets: 1000, tx_packets: 990, restarts: 0, crypto_packets: 900, helped_packets: 100 },
        { worker: 1, rx_packets: 500, tx_packets: 480, restarts: 2, crypto_packets: 0, helped_packets: 0 },
      ],
      weak_psk_tunnels: [{ tenant: 'acme', count: 1 }],
    },
  } as StateSnapshot;
}

/** Names the first known secret `text` contains (verbatim or base64), or undefined. */
export function findSecret(text: string): string | undefined {
  for (const [name, s] of Object.entries(SECRETS)) {
    if (text.includes(s)) return name;
    if (text.includes(Buffer.from(s).toString('base64'))) return `${name} (base64)`;
  }
  return undefined;
}

export function tempSocketDir(): string {
  // Unix socket paths are limited to ~107 bytes; keep the directory short.
  return mkdtempSync(join(tmpdir(), 'cvl-'));
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request with full control over method, headers and body. */
export function request(
  to: { socketPath: string } | { host: string; port: number },
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ ...to, path, method: init.method ?? 'GET', headers: init.headers ?? {} }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    // A server that answers before reading the whole body and closes makes our write fail
    // (EPIPE/ECONNRESET); that is the behaviour under test, not a failure, once a response came.
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    if (init.body !== undefined) req.end(init.body);
    else req.end();
  });
}

/**
 * Leaves a socket file with no listener behind, as a daemon killed with SIGKILL does (a clean
 * close would unlink it).
 */
export function makeStaleSocket(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['-e', "require('net').createServer().listen(process.argv[1], () => process.stdout.write('up'))", path],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child.stdout.once('data', () => child.kill('SIGKILL'));
    child.once('exit', () => resolve());
    child.once('error', reject);
  });
}
