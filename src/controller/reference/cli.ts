#!/usr/bin/env node
/**
 * REFERENCE controller command line — for tests and for trying cvlan-vrouter by hand.
 *
 *   node dist/src/controller/reference/cli.js serve --state DIR [--listen HOST:PORT] [--name NAME]...
 *   node dist/src/controller/reference/cli.js token --state DIR --vrouter ID
 *   node dist/src/controller/reference/cli.js set-document --state DIR --vrouter ID FILE
 *   node dist/src/controller/reference/cli.js show --state DIR --vrouter ID
 *
 * `serve` prints one JSON line `{"event":"ready","url":...,"ca":...}`; the other commands talk to
 * the running server through its admin API (URL, CA and admin token from the state dir).
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startReferenceController } from './server.js';

const USAGE = `usage: reference-controller <command> --state DIR [options]   (a REFERENCE controller, not the product)
  serve [--listen HOST:PORT] [--name NAME]... [--lifetime SECONDS]
                               serve the controller API over HTTPS (throw-away CA in DIR/pki/ca.pem)
  token --vrouter ID           mint a one-time registration token for vrouter ID
  set-document --vrouter ID FILE
                               set the vrouter's configuration (a new generation)
  show --vrouter ID            the vrouter's registration, generation and last status report
`;

function admin(stateDir: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const url = new URL(readFileSync(join(stateDir, 'url'), 'utf8').trim());
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        hostname: url.hostname,
        port: url.port,
        path,
        method,
        ca: readFileSync(join(stateDir, 'pki', 'ca.pem')),
        headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 300) reject(new Error(`${res.statusCode}: ${text}`));
          else resolve(JSON.parse(text) as unknown);
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      state: { type: 'string' },
      listen: { type: 'string' },
      name: { type: 'string', multiple: true },
      lifetime: { type: 'string' },
      vrouter: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !cmd || !values.state) {
    process.stderr.write(USAGE);
    return values.help ? 0 : 1;
  }
  const state = values.state;
  switch (cmd) {
    case 'serve': {
      const m = /^(.*):(\d+)$/.exec(values.listen ?? '127.0.0.1:8443');
      if (!m) throw new Error('--listen: expected HOST:PORT');
      const c = await startReferenceController({
        stateDir: state,
        host: m[1]!.replace(/^\[|\]$/g, ''),
        port: Number(m[2]),
        ...(values.name ? { names: values.name } : {}),
        ...(values.lifetime ? { credentialLifetimeS: Number(values.lifetime) } : {}),
      });
      process.stdout.write(`${JSON.stringify({ event: 'ready', url: c.url, ca: c.caFile })}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await c.close();
      return 0;
    }
    case 'token':
      if (!values.vrouter) break;
      process.stdout.write(`${((await admin(state, 'POST', '/reference/admin/tokens', { vrouter_id: values.vrouter })) as { token: string }).token}\n`);
      return 0;
    case 'set-document': {
      if (!values.vrouter || positionals.length !== 1) break;
      const doc = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as unknown;
      process.stdout.write(`${JSON.stringify(await admin(state, 'PUT', `/reference/admin/vrouters/${encodeURIComponent(values.vrouter)}/document`, doc))}\n`);
      return 0;
    }
    case 'show':
      if (!values.vrouter) break;
      process.stdout.write(`${JSON.stringify(await admin(state, 'GET', `/reference/admin/vrouters/${encodeURIComponent(values.vrouter)}`), null, 2)}\n`);
      return 0;
  }
  process.stderr.write(USAGE);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`reference-controller: ${(e as Error).message}\n`);
    process.exit(2);
  },
);
