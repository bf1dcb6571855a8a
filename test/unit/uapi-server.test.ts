// The UAPI socket: permissions, stale and live sockets, framing of several requests on one
// connection, the end of a stream ending a `set`, size limits, and errno for failing devices.
// Uses a private temporary directory instead of /var/run/wireguard.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CvlanError } from '../../src/errors.js';
import { InMemoryWireGuard, type WgDeviceState, type WireGuardControl } from '../../src/wireguard/control.js';
import { startUapiServer } from '../../src/wireguard/uapi-server.js';

const A_PUB = '57537aa7110d1ecd158cbfc873ea1249e59d0bd6f6be0c178e5feebdbf94686d';

/** Sends `data` (then half-closes unless `keepOpen`) and collects the reply until the server closes or `until` matches. */
function exchange(path: string, data: string, opts: { keepOpen?: boolean; until?: (s: string) => boolean } = {}): Promise<{ reply: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let reply = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply, closedByServer: false });
    }, 1500);
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      reply += c;
      if (opts.until?.(reply)) {
        clearTimeout(timer);
        s.destroy();
        resolve({ reply, closedByServer: false });
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closedByServer: true });
    });
    s.write(data);
    if (!opts.keepOpen) s.end();
  });
}

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'cvlan-uapi-'));
  dirs.push(d);
  return join(d, 'run', 'wireguard');
};
t.teardown(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

t.test('socket, directory and modes as wireguard-go makes them; close removes it', async (t) => {
  const dir = tempDir();
  const umask = (): number => {
    const m = process.umask(0o022);
    process.umask(m);
    return m;
  };
  const before = umask();
  const srv = await startUapiServer(new InMemoryWireGuard('cvut0'), { dir });
  t.equal(umask(), before, 'the process umask is restored after the bind');
  t.equal(srv.path, join(dir, 'cvut0.sock'));
  t.equal(statSync(dir).mode & 0o777, 0o755, 'directory 0755');
  t.ok(statSync(srv.path).isSocket());
  t.equal(statSync(srv.path).mode & 0o777, 0o600, 'socket 0600');
  await srv.close();
  await srv.close();
  t.notOk(existsSync(srv.path), 'socket removed');
});

t.test('several requests on one connection, in order', async (t) => {
  const wg = new InMemoryWireGuard('cvut1');
  const seen: number[] = [];
  const srv = await startUapiServer(wg, { dir: tempDir(), onSet: (u) => seen.push(u.peers.length) });
  t.teardown(() => srv.close());
  const { reply, closedByServer } = await exchange(
    srv.path,
    `set=1\nlisten_port=51820\npublic_key=${A_PUB}\nallowed_ip=10.0.0.0/8\n\nget=1\n\nset=1\nfoo=bar\n\nget=1\n\n`,
  );
  const get = `listen_port=51820\npublic_key=${A_PUB}\npreshared_key=${'0'.repeat(64)}\nprotocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.0.0.0/8\nerrno=0\n\n`;
  t.equal(reply, `errno=0\n\n${get}errno=-22\n\n${get}`, 'an error does not end the connection; nothing was applied');
  t.ok(closedByServer, 'the server ends the stream after the client does');
  t.same(seen, [1], 'onSet after each applied set');
  // Requests may arrive in any number of pieces.
  const s = connect(srv.path);
  let got = '';
  s.setEncoding('utf8');
  s.on('data', (c: string) => (got += c));
  for (const piece of ['se', 't=1\nlisten_', 'port=7\n', '\n', 'get', '=1\n', '\n']) {
    s.write(piece);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  t.match(got, /^errno=0\n\nlisten_port=7\n/);
});

t.test('framing errors: get with trailing data, unknown operation, end of stream', async (t) => {
  const wg = new InMemoryWireGuard('cvut2');
  const srv = await startUapiServer(wg, { dir: tempDir() });
  t.teardown(() => srv.close());
  const trailing = await exchange(srv.path, 'get=1\nXget=1\n\n');
  t.equal(trailing.reply, 'errno=-22\n\nerrno=0\n\n', 'wireguard-go reads one byte after get=1 and wants the empty line');
  const unknown = await exchange(srv.path, 'bogus=1\n\n', { keepOpen: true });
  t.equal(unknown.reply, '');
  t.ok(unknown.closedByServer, 'unknown operation: the connection is closed');
  const crlf = await exchange(srv.path, 'get=1\r\n\r\n', { keepOpen: true });
  t.ok(crlf.closedByServer && crlf.reply === '', 'the operation line must end in a bare newline');
  const eof = await exchange(srv.path, 'set=1\nlisten_port=9');
  t.equal(eof.reply, 'errno=0\n\n', 'the end of the stream ends a set, unterminated last line included');
  t.equal(wg.state().listenPort, 9);
  const proto = await exchange(srv.path, 'set=1\nnoequals\n\n');
  t.equal(proto.reply, 'errno=-71\n\n');
});

t.test('request size limit', async (t) => {
  const wg = new InMemoryWireGuard('cvut3');
  const srv = await startUapiServer(wg, { dir: tempDir(), maxRequestBytes: 4096 });
  t.teardown(() => srv.close());
  const lines = Array.from({ length: 200 }, (_, i) => `allowed_ip=10.0.${i}.0/24`).join('\n');
  const big = await exchange(srv.path, `set=1\npublic_key=${A_PUB}\n${lines}\n\n`, { keepOpen: true });
  t.equal(big.reply, 'errno=-90\n\n', 'EMSGSIZE');
  t.ok(big.closedByServer);
  t.equal(wg.state().peers.length, 0, 'nothing applied');
  const longLine = await exchange(srv.path, `set=1\nlisten_port=${'1'.repeat(5000)}`, { keepOpen: true });
  t.equal(longLine.reply, 'errno=-90\n\n', 'an unterminated long line counts too');
  const longOp = await exchange(srv.path, 'x'.repeat(5000), { keepOpen: true });
  t.ok(longOp.closedByServer && longOp.reply === '');
  t.rejects(startUapiServer(new InMemoryWireGuard('cvut3b'), { maxRequestBytes: 10 }), { code: 'CVLAN_ERR_INVALID_ARG' });
});

t.test('device failures map to errno', async (t) => {
  const failing = (code: 'CVLAN_ERR_ADDR_IN_USE' | 'CVLAN_ERR_WORKER'): WireGuardControl => ({
    name: `cvut4${code.length}`,
    state: (): WgDeviceState => {
      throw new CvlanError('CVLAN_ERR_CLOSED');
    },
    apply: () => {
      throw new CvlanError(code);
    },
  });
  const a = await startUapiServer(failing('CVLAN_ERR_ADDR_IN_USE'), { dir: tempDir() });
  t.teardown(() => a.close());
  t.equal((await exchange(a.path, 'set=1\nlisten_port=1\n\nget=1\n\n')).reply, 'errno=-98\n\nerrno=-5\n\n');
  const b = await startUapiServer(failing('CVLAN_ERR_WORKER'), { dir: tempDir() });
  t.teardown(() => b.close());
  t.equal((await exchange(b.path, 'set=1\n\n')).reply, 'errno=-5\n\n');
});

t.test('stale socket replaced, live socket and other files refused', async (t) => {
  const dir = tempDir();
  const first = await startUapiServer(new InMemoryWireGuard('cvut5'), { dir });
  await t.rejects(startUapiServer(new InMemoryWireGuard('cvut5'), { dir }), { code: 'CVLAN_ERR_WG_UAPI_IN_USE' });
  t.ok(existsSync(first.path), 'the live socket is left alone');
  await first.close();

  // A socket file nobody answers on (its process died).
  const path = join(dir, 'cvut6.sock');
  const died = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
  t.equal(died.status, 0, 'a process bound the socket and exited');
  t.ok(existsSync(path), 'stale socket present');
  const srv = await startUapiServer(new InMemoryWireGuard('cvut6'), { dir });
  t.equal((await exchange(srv.path, 'get=1\n\n')).reply, 'errno=0\n\n', 'the stale socket was replaced');
  await srv.close();

  writeFileSync(join(dir, 'cvut7.sock'), 'not a socket');
  await t.rejects(startUapiServer(new InMemoryWireGuard('cvut7'), { dir }), { code: 'CVLAN_ERR_WG_UAPI_IN_USE' });
  await t.rejects(startUapiServer(new InMemoryWireGuard('../etc/x'), { dir }), { code: 'CVLAN_ERR_INVALID_ARG' });
  await t.rejects(startUapiServer(new InMemoryWireGuard('a-name-longer-than-15'), { dir }), { code: 'CVLAN_ERR_INVALID_ARG' });
});
