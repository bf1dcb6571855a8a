// Structured logs: event helpers carry tenant/tunnel, and no secret survives into a line.

import t from 'tap';
import { createLogger, eventLog, LogEvents, REDACTED, scrubSecrets } from '../../src/log.js';
import { findSecret, SECRETS } from './api-fixture.js';

function capture() {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines, parsed };
}

void t.test('ready line and basic shape', async (t) => {
  const { logger, parsed } = capture();
  logger.info('ready');
  const [line] = parsed();
  t.equal(line!.msg, 'ready');
  t.equal(line!.level, 30);
  t.equal(line!.name, 'cvlan-vrouter');
  t.match(line!.time, /^\d{4}-\d\d-\d\dT/, 'ISO time');
  t.throws(() => createLogger({ level: 'loud' as never }), TypeError);
});

void t.test('every event helper names its event, tenant and tunnel', async (t) => {
  const { logger, parsed } = capture();
  const ev = eventLog(logger);
  ev.tunnelUp({ tenant: 'acme', tunnel: 'site-a', type: 'ipsec', remote: '198.51.100.7' });
  ev.tunnelDown({ tenant: 'acme', tunnel: 'site-a', type: 'ipsec', reason: 'DPD timeout' });
  ev.authFailure({ tenant: 'acme', tunnel: 'site-a', remote: '198.51.100.7', method: 'psk', reason: 'AUTH_FAILED' });
  ev.routingChange({ tenant: 'acme', tunnel: null, action: 'add', prefix: '10.20.0.2/32', via: { kind: 'wireguard', id: 'HIgo' } });
  ev.configApplied({ tenant: 'acme', version: 'v43', changes: 2 });
  ev.configRefused({ tenant: null, version: 'v44', reason: 'invalid', issues: [{ path: 'tunnels[0].auth.psk', reason: 'too short' }] });
  ev.charonRestart({ attempt: 2, backoff_ms: 2000, exit_code: null, signal: 'SIGSEGV' });
  ev.haFailover({ from_role: 'standby', to_role: 'active', reason: 'peer heartbeat lost' });
  ev.weakPsk({ tenant: 'acme', tunnel: 'site-a', min_bytes: 16 });
  ev.bgpSession({ tenant: 'acme', neighbor: 'vpc', state: 'Established', info: '' });
  ev.bgpImportRefused({ tenant: 'acme', neighbor: 'vpc', reason: 'limit', count: 3 });
  ev.deviceLost({ tenant: 'acme', device: 'wg-acme', kind: 'wireguard', reason: 'TUN read failed: File descriptor in bad state' });
  ev.sasRemoved({ tenant: 'acme', tunnel: 'site-a', spis: ['c0ffee01'], reason: 'orphaned by a charon restart, not replaced within 60 s' });
  ev.haRole({ from_role: 'standby', to_role: 'active', vrrp: 'MASTER', reason: 'VRRP election' });
  ev.haFence({ fenced: true, reason: 'peer-active' });
  ev.haSync({ state: 'down', reason: 'connection reset' });
  const lines = parsed();
  t.same(lines.map((l) => l.event), Object.values(LogEvents));
  for (const l of lines) {
    t.ok('tenant' in l && 'tunnel' in l, `${String(l.event)} has tenant and tunnel`);
    t.type(l.msg, 'string');
  }
  t.match(lines[0], { event: 'tunnel_up', tenant: 'acme', tunnel: 'site-a', type: 'ipsec', level: 30 });
  t.match(lines[2], { event: 'auth_failure', level: 40, remote: '198.51.100.7' });
  t.match(lines[5], { event: 'config_refused', level: 50, tenant: null, tunnel: null });
  t.same((lines[5]!.issues as unknown[])[0], { path: 'tunnels[0].auth.psk', reason: 'too short' }, 'field paths stay');
  t.match(lines[6], { signal: 'SIGSEGV', tenant: null });
});

void t.test('secrets are censored at any depth', async (t) => {
  const { logger, lines } = capture();
  logger.info({ psk: SECRETS.psk }, 'top level');
  logger.info({ tunnel: { auth: { method: 'psk', psk: SECRETS.psk } } }, 'two levels');
  logger.info({ config: { tunnels: [{ id: 'a', auth: { psk: SECRETS.psk, eap_password: SECRETS.eapPassword } }] } }, 'deep');
  logger.info({ peer: { private_key: SECRETS.wgPrivateKey, preshared_key: SECRETS.wgPresharedKey } }, 'wg');
  logger.info({ Private_Key: SECRETS.wgPrivateKey, PresharedKey: SECRETS.wgPresharedKey }, 'case');
  logger.info({ headers: { authorization: `Bearer ${SECRETS.controllerToken}` } }, 'header');
  logger.info({ controller: { token: SECRETS.controllerToken, password: SECRETS.eapPassword } }, 'token');
  logger.info({ key: Buffer.from(SECRETS.childEncKeyHex, 'hex'), keyHex: 'fine' }, 'bytes');
  logger.child({ secret: SECRETS.psk }).info('child bindings');
  const ev = eventLog(logger);
  ev.authFailure({ tenant: 'acme', tunnel: 'a', remote: 'x', method: 'psk', reason: 'bad', ...({ psk: SECRETS.psk } as object) });
  t.equal(lines.length, 10);
  for (const l of lines) t.equal(findSecret(l), undefined, l);
  t.ok(lines.every((l) => l.includes(REDACTED) || l.includes('"keyHex"')), 'censored, not dropped');
  const deep = JSON.parse(lines[2]!) as { config: { tunnels: Array<{ id: string; auth: Record<string, string> }> } };
  t.equal(deep.config.tunnels[0]!.id, 'a', 'non-secret siblings kept');
  t.equal(deep.config.tunnels[0]!.auth.psk, REDACTED);
});

void t.test('scrubSecrets copes with cycles and leaves input alone', async (t) => {
  const o: Record<string, unknown> = { a: 1, psk: 'x' };
  o.self = o;
  const s = scrubSecrets(o) as Record<string, unknown>;
  t.equal(s.psk, REDACTED);
  t.equal(s.self, '[circular]');
  t.equal(o.psk, 'x', 'input not mutated');
});
