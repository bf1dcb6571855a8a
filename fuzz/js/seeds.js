'use strict';
// Writes the seed corpus of the TypeScript targets (fuzz/corpus/{vici,uapi,controller}/) with
// the project's own encoders and its demo configuration: `node fuzz/js/seeds.js` after tsc.
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const repo = path.resolve(__dirname, '../..');
const load = (rel) => import(pathToFileURL(path.join(repo, 'dist/src', rel)).href);

function write(target, name, bytes) {
  const dir = path.join(repo, 'fuzz/corpus', target);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, name), bytes);
}

async function main() {
  const v = await load('strongswan/vici/encoding.js');
  const { PacketType: T } = v;
  const conn = {
    'site-a': {
      version: 2,
      local_addrs: ['192.0.2.1'],
      remote_addrs: ['192.0.2.2'],
      proposals: ['aes256gcm16-prfsha256-x25519'],
      local: { auth: 'psk', id: 'vrouter.demo.cvlan' },
      remote: { auth: 'psk', id: 'legacy.demo.cvlan' },
      children: { net: { local_ts: ['10.20.0.0/24'], remote_ts: ['10.10.0.0/24'], esp_proposals: ['aes256gcm16'] } },
    },
  };
  const ikeEvent = {
    'site-a': {
      uniqueid: '7',
      state: 'ESTABLISHED',
      'remote-id': 'legacy.demo.cvlan',
      'child-sas': { 'net-3': { 'spi-in': 'c0ffee01', 'bytes-in': '1200' } },
    },
  };
  const packets = {
    cmd_request: v.encodePacket(T.CMD_REQUEST, 'load-conn', conn),
    cmd_response: v.encodePacket(T.CMD_RESPONSE, undefined, { success: 'yes', errmsg: '' }),
    cmd_unknown: v.encodePacket(T.CMD_UNKNOWN),
    event_register: v.encodePacket(T.EVENT_REGISTER, 'ike-updown'),
    event_confirm: v.encodePacket(T.EVENT_CONFIRM),
    event: v.encodePacket(T.EVENT, 'ike-updown', ikeEvent),
  };
  for (const [name, p] of Object.entries(packets)) write('vici', name, v.frame(p));
  write('vici', 'stream', Buffer.concat(Object.values(packets).map((p) => v.frame(p))));
  write('vici', 'message', v.encodeMessage(conn));

  const key = (b) => Buffer.alloc(32, b).toString('hex');
  write(
    'uapi',
    'set_device',
    `private_key=${key(0x11)}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n`,
  );
  write(
    'uapi',
    'set_peer',
    [
      `public_key=${key(0x22)}`,
      `preshared_key=${key(0x33)}`,
      'endpoint=192.0.2.2:51820',
      'persistent_keepalive_interval=25',
      'replace_allowed_ips=true',
      'allowed_ip=10.20.0.2/32',
      'allowed_ip=fd00::/64',
      'allowed_ip=-10.9.0.0/16',
      'protocol_version=1',
      '',
    ].join('\n'),
  );
  write('uapi', 'remove_peer', `public_key=${key(0x44)}\nremove=true\nupdate_only=true\nendpoint=[fd00::1]:51820\n`);

  const b64 = (b) => Buffer.alloc(32, b).toString('base64');
  const demo = fs
    .readFileSync(path.join(repo, 'src/config/default-demo.json'), 'utf8')
    .replace('${DEMO_PSK}', 'a-demo-psk-of-24-chars!!')
    .replace('${VROUTER_WG_PRIVATE_KEY}', b64(0x41))
    .replace('${AGENT_PUBLIC_KEY}', b64(0x42));
  JSON.parse(demo);
  write('controller', 'demo', demo);
  const doc = JSON.parse(demo);
  write('controller', 'minimal', JSON.stringify({ vrouter_id: 'v1', tenant_id: 't1' }));
  write(
    'controller',
    'two_tenants',
    JSON.stringify([
      doc,
      { ...doc, tenant_id: 'other', tunnels: [], wireguard: { listen_port: 51821, private_key: b64(0x43) } },
    ]),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
