// The capture reader of the HA tests: every WireGuard message and ESP packet of a datagram the
// data plane sent with UDP GSO (several messages back to back in one captured frame).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capturedPackets, repeatedNonces } from '../harness/ha-pair.js';

function frame(sport: number, dport: number, payload: Buffer): Buffer {
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  eth[6] = 0x02;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip[9] = 17;
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  return Buffer.concat([eth, ip, udp, payload]);
}

function wg(counter: bigint, len: number): Buffer {
  const b = Buffer.alloc(len, 0xab);
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(0x1234, 4);
  b.writeBigUInt64LE(counter, 8);
  return b;
}

function esp(seq: number, len: number): Buffer {
  const b = Buffer.alloc(len, 0xcd);
  b.writeUInt32BE(0xc0ffee, 0);
  b.writeUInt32BE(seq, 4);
  return b;
}

function pcap(frames: Buffer[]): string {
  const hdr = Buffer.alloc(24);
  hdr.writeUInt32LE(0xa1b2c3d4, 0);
  hdr.writeUInt32LE(65535, 16);
  hdr.writeUInt32LE(1, 20);
  const recs = frames.map((f) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, f]);
  });
  const dir = mkdtempSync(join(tmpdir(), 'cvlan-pcap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'x.pcap');
  writeFileSync(file, Buffer.concat([hdr, ...recs]));
  return file;
}

t.test('GSO datagrams are read segment by segment; single messages stay whole', async (t) => {
  const file = pcap([
    frame(51820, 40000, Buffer.concat([wg(1n, 64), wg(2n, 64), wg(3n, 64), wg(4n, 48)])),
    frame(4500, 4500, Buffer.concat([esp(7, 100), esp(8, 100)])),
    frame(51820, 40000, wg(9n, 80)),
    frame(4500, 4500, esp(10, 60)),
  ]);
  const got = capturedPackets(file, { wgPort: 51820 }).map((p) => `${p.kind} ${p.id.toString(16)} ${p.seq}`);
  t.same(got, ['wireguard 1234 1', 'wireguard 1234 2', 'wireguard 1234 3', 'wireguard 1234 4', 'esp c0ffee 7', 'esp c0ffee 8', 'wireguard 1234 9', 'esp c0ffee 10']);
});

t.test('a nonce repeated inside one GSO datagram is found', async (t) => {
  const file = pcap([frame(51820, 40000, Buffer.concat([wg(5n, 64), wg(5n, 64)]))]);
  t.equal(repeatedNonces(capturedPackets(file, { wgPort: 51820 })).length, 1);
});
