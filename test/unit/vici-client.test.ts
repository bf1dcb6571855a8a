// ViciClient against a scripted peer on a unix socket. The peer answers with hand-built bytes and
// lets the tests produce what a healthy charon never does on demand: silence (timeouts), garbage
// (protocol errors) and dropped connections (reconnect + re-registration). The real daemon is
// exercised in test/net/charon-vici.test.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ViciClient } from '../../src/strongswan/vici/client.js';

const b = (s: string): number[] => [...Buffer.from(s, 'ascii')];
const seg = (bytes: number[]): Buffer => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(bytes.length);
  return Buffer.concat([h, Buffer.from(bytes)]);
};
const kv = (k: string, v: string): number[] => [3, k.length, ...b(k), 0, v.length, ...b(v)];
const RESPONSE = (...elems: number[][]): Buffer => seg([1, ...elems.flat()]);
const CONFIRM = seg([5]);
const UNKNOWN_EVENT = seg([6]);
const EVENT = (name: string, ...elems: number[][]): Buffer => seg([7, name.length, ...b(name), ...elems.flat()]);

interface Received {
  type: number;
  name: string;
}

/** A peer that parses each incoming segment's type and name and asks `answer` what to send. */
async function peer(
  t: Test,
  answer: (p: Received, sock: net.Socket, connIndex: number) => void,
) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvlan-vici-'));
  const socketPath = path.join(dir, 'vici');
  const received: Received[] = [];
  const sockets: net.Socket[] = [];
  let connections = 0;
  const server = net.createServer((sock) => {
    const idx = connections++;
    sockets.push(sock);
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const p = buf.subarray(4, 4 + len);
        buf = buf.subarray(4 + len);
        const type = p[0]!;
        const name = [0, 3, 4, 7].includes(type) ? p.toString('ascii', 2, 2 + p[1]!) : '';
        received.push({ type, name });
        answer({ type, name }, sock, idx);
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });
  return { socketPath, received, sockets, connections: () => connections };
}

void t.test('requests are serialized; success=no becomes CVLAN_ERR_VICI_COMMAND with errmsg', async (t) => {
  const order: string[] = [];
  let outstanding = 0;
  let maxOutstanding = 0;
  const p = await peer(t, (pkt, sock) => {
    order.push(pkt.name);
    maxOutstanding = Math.max(maxOutstanding, ++outstanding);
    // Answer late, so a client that did not queue would have several requests on the wire.
    setTimeout(() => {
      outstanding -= 1;
      if (pkt.name === 'version') sock.write(RESPONSE(kv('daemon', 'charon'), kv('version', '5.9.8')));
      else if (pkt.name === 'load-conn') sock.write(RESPONSE(kv('success', 'no'), kv('errmsg', 'bad proposal')));
      else sock.write(seg([2])); // CMD_UNKNOWN
    }, 20);
  });
  const c = new ViciClient({ socketPath: p.socketPath });
  t.teardown(() => c.close());
  await c.connect();
  const v1 = c.version();
  const lc = c.loadConn('x', { version: 2 });
  const un = c.request('frobnicate');
  t.same((await v1).version, '5.9.8');
  await t.rejects(lc, { code: 'CVLAN_ERR_VICI_COMMAND', message: /load-conn failed: bad proposal/ });
  await t.rejects(un, { code: 'CVLAN_ERR_VICI_COMMAND', message: /does not know the command "frobnicate"/ });
  t.same(order, ['version', 'load-conn', 'frobnicate']);
  t.equal(maxOutstanding, 1, 'never more than one request on the wire');
});

void t.test('streamed command collects events between request and response, and unregisters', async (t) => {
  const p = await peer(t, (pkt, sock) => {
    if (pkt.type === 3 || pkt.type === 4) sock.write(CONFIRM);
    else if (pkt.name === 'list-sas') {
      sock.write(EVENT('list-sa', [1, 2, ...b('gw')], kv('state', 'ESTABLISHED'), kv('uniqueid', '7'), [2]));
      // an event of another kind in between is not part of the stream
      sock.write(EVENT('ike-updown', kv('up', 'yes')));
      sock.write(EVENT('list-sa', [1, 3, ...b('gw2')], kv('state', 'CONNECTING'), [2]));
      sock.write(RESPONSE());
    }
  });
  const c = new ViciClient({ socketPath: p.socketPath });
  t.teardown(() => c.close());
  const sas = await c.listSas();
  t.same(
    sas.map((s) => [s.name, s.state, s.uniqueId]),
    [
      ['gw', 'ESTABLISHED', 7],
      ['gw2', 'CONNECTING', undefined],
    ],
  );
  t.same(
    p.received.map((r) => [r.type, r.name]),
    [
      [3, 'list-sa'],
      [0, 'list-sas'],
      [4, 'list-sa'],
    ],
  );
});

void t.test('a timeout fails the request, drops the connection, and the next request works', async (t) => {
  const p = await peer(t, (pkt, sock) => {
    if (pkt.name === 'version') sock.write(RESPONSE(kv('daemon', 'charon')));
    // 'stats' is never answered
  });
  const c = new ViciClient({ socketPath: p.socketPath, requestTimeoutMs: 200, reconnectInitialMs: 10 });
  t.teardown(() => c.close());
  await c.connect();
  const started = Date.now();
  await t.rejects(c.stats(), { code: 'CVLAN_ERR_VICI_TIMEOUT' });
  t.ok(Date.now() - started >= 190, 'waited for the timeout');
  t.equal((await c.version()).daemon, 'charon');
  t.equal(p.connections(), 2, 'reconnected after the timeout');
});

void t.test('malformed data from the peer: CVLAN_ERR_VICI_PROTOCOL for the request, then reconnect', async (t) => {
  const p = await peer(t, (pkt, sock, idx) => {
    if (idx === 0) sock.write(seg([1, 9])); // unknown element type 9
    else sock.write(RESPONSE(kv('daemon', 'charon')));
  });
  const c = new ViciClient({ socketPath: p.socketPath, reconnectInitialMs: 10 });
  t.teardown(() => c.close());
  await t.rejects(c.version(), { code: 'CVLAN_ERR_VICI_PROTOCOL', message: /unknown element type 9/ });
  t.equal((await c.version()).daemon, 'charon');
});

void t.test('subscriptions are registered again after a reconnect; typed events are delivered', async (t) => {
  const p = await peer(t, (pkt, sock) => {
    if (pkt.type === 3) {
      sock.write(pkt.name === 'bogus' ? UNKNOWN_EVENT : CONFIRM);
      if (pkt.name === 'child-updown') {
        sock.write(
          EVENT(
            'child-updown',
            kv('up', 'yes'),
            [1, 2, ...b('gw')],
            kv('state', 'ESTABLISHED'),
            [1, 9, ...b('child-sas')],
            [1, 5, ...b('net-1')],
            kv('name', 'net'),
            kv('bytes-in', '84'),
            [4, 8, ...b('local-ts'), 5, 0, 10, ...b('10.0.0.0/8'), 6],
            [2, 2, 2],
          ),
        );
      }
    }
  });
  const c = new ViciClient({ socketPath: p.socketPath, reconnectInitialMs: 10 });
  t.teardown(() => c.close());
  await c.connect();
  await c.subscribe('ike-updown');
  await t.rejects(c.subscribe('bogus'), { code: 'CVLAN_ERR_VICI_COMMAND' });
  const got = new Promise<{ up: boolean; name: string; child: string | undefined; bytes: number | undefined; ts: string[] }>(
    (resolve) =>
      c.once('child-updown', (e) =>
        resolve({
          up: e.up,
          name: e.ike.name,
          child: e.ike.childSas[0]?.name,
          bytes: e.ike.childSas[0]?.bytesIn,
          ts: e.ike.childSas[0]?.localTs ?? [],
        }),
      ),
  );
  await c.subscribe('child-updown');
  t.same(await got, { up: true, name: 'gw', child: 'net', bytes: 84, ts: ['10.0.0.0/8'] });

  const reconnected = new Promise<void>((r) => c.once('connected', () => r()));
  p.sockets[0]!.destroy();
  await reconnected;
  const regs = p.received.filter((r) => r.type === 3).map((r) => r.name);
  t.same(regs, ['ike-updown', 'bogus', 'child-updown', 'ike-updown', 'child-updown'], 'registered again, bogus dropped');
});

void t.test('close() fails queued work with CVLAN_ERR_VICI_CLOSED; connect to nothing times out', async (t) => {
  const p = await peer(t, () => undefined);
  const c = new ViciClient({ socketPath: p.socketPath, requestTimeoutMs: 5_000 });
  await c.connect();
  // One request on the wire, one queued behind it; handlers attached before close() rejects them.
  const pending = [
    t.rejects(c.version(), { code: 'CVLAN_ERR_VICI_CLOSED' }),
    t.rejects(c.stats(), { code: 'CVLAN_ERR_VICI_CLOSED' }),
  ];
  await c.close();
  await Promise.all(pending);
  await t.rejects(c.version(), { code: 'CVLAN_ERR_VICI_CLOSED' });

  const nobody = new ViciClient({ socketPath: path.join(tmpdir(), `cvlan-none-${process.pid}.vici`), reconnectInitialMs: 10 });
  await t.rejects(nobody.connect(150), { code: 'CVLAN_ERR_VICI_TIMEOUT' });
  await nobody.close();
});

void t.test('pipeline: a batch on the wire at once, answers matched in order, one failure stays its own', async (t) => {
  let outstanding = 0;
  let maxOutstanding = 0;
  const order: string[] = [];
  const p = await peer(t, (pkt, sock) => {
    if (pkt.type === 3) {
      sock.write(CONFIRM);
      return;
    }
    order.push(pkt.name);
    maxOutstanding = Math.max(maxOutstanding, ++outstanding);
    // Answered late and in order, with an event in between, as charon does.
    setTimeout(() => {
      outstanding -= 1;
      if (pkt.name === 'load-shared') sock.write(EVENT('ike-updown', kv('up', 'yes')));
      sock.write(pkt.name === 'unload-conn' ? RESPONSE(kv('success', 'no'), kv('errmsg', 'no such connection')) : RESPONSE(kv('success', 'yes')));
    }, 20);
  });
  const c = new ViciClient({ socketPath: p.socketPath });
  t.teardown(() => c.close());
  let events = 0;
  c.on('event', () => events++);
  await c.subscribe('ike-updown');
  const commands = [
    { command: 'load-shared', message: { id: 'a' } },
    { command: 'load-conn', message: { a: { version: 2 } } },
    { command: 'unload-conn', message: { name: 'gone' } },
    { command: 'load-conn', message: { b: { version: 2 } } },
    { command: 'load-shared', message: { id: 'c' } },
  ];
  const results = await c.pipeline(commands, { batch: 3 });
  t.same(order, ['load-shared', 'load-conn', 'unload-conn', 'load-conn', 'load-shared']);
  t.equal(maxOutstanding, 3, 'a batch of 3 on the wire at once, never more');
  t.same(
    results.map((r) => (r instanceof Error ? r.message : 'ok')),
    ['ok', 'ok', 'unload-conn failed: no such connection', 'ok', 'ok'],
  );
  t.equal(events, 2, 'events between the answers still reach the listeners');
  t.equal((await c.request('version')).success, 'yes', 'a request after the pipeline works');
});

void t.test('pipeline: a batch charon does not finish in time fails, the connection starts over', async (t) => {
  let n = 0;
  const p = await peer(t, (pkt, sock) => {
    // Only the first of each batch is answered.
    if (n++ % 2 === 0) sock.write(RESPONSE(kv('success', 'yes')));
  });
  const c = new ViciClient({ socketPath: p.socketPath, requestTimeoutMs: 200, reconnectInitialMs: 10 });
  t.teardown(() => c.close());
  await c.connect();
  const r = await c.pipeline([{ command: 'load-conn' }, { command: 'load-conn' }, { command: 'load-conn' }], { batch: 2 });
  t.equal(r[0] instanceof Error, false, 'the answered one succeeded');
  t.match((r[1] as Error & { code: string }).code, 'CVLAN_ERR_VICI_TIMEOUT');
  t.equal(r[2] instanceof Error, false, 'the next batch went out on the new connection');
  t.equal(p.connections(), 2, 'reconnected after the timeout');
});
