// WireGuard keys against the `wg` tool and RFC 7748's published X25519 vector.

import { execFileSync } from 'node:child_process';
import t from 'tap';
import {
  clamp,
  decodeKey,
  encodeKey,
  generatePrivateKey,
  genkey,
  isKeyText,
  publicKeyOf,
  pubkey,
} from '../../src/secrets/keys.js';

const wg = (args: string[], input?: string) => execFileSync('wg', args, { input, encoding: 'utf8' }).trim();

void t.test('RFC 7748 §6.1 X25519 vector', async (t) => {
  const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
  const alicePub = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
  t.equal(publicKeyOf(alicePriv).toString('hex'), alicePub);
  const bobPriv = Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex');
  t.equal(publicKeyOf(bobPriv).toString('hex'), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
});

void t.test('our pubkey equals wg pubkey', async (t) => {
  for (let i = 0; i < 5; i++) {
    const priv = wg(['genkey']);
    t.equal(pubkey(priv), wg(['pubkey'], `${priv}\n`), `wg genkey #${i}`);
  }
  // An unclamped scalar: both sides clamp before multiplying.
  const raw = Buffer.alloc(32, 0xff).toString('base64');
  t.equal(pubkey(raw), wg(['pubkey'], raw));
});

void t.test('wg accepts our genkey and agrees on its public key', async (t) => {
  for (let i = 0; i < 5; i++) {
    const priv = genkey();
    t.ok(isKeyText(priv), priv.length === 44 ? 'key text' : `bad length ${priv.length}`);
    const bytes = Buffer.from(priv, 'base64');
    t.equal(bytes[0]! & 7, 0, 'low bits clear');
    t.equal(bytes[31]! & 0xc0, 0x40, 'bit 255 clear, bit 254 set');
    t.equal(wg(['pubkey'], priv), pubkey(priv));
  }
  t.not(genkey(), genkey(), 'random');
});

void t.test('secure buffers are zeroed on dispose', async (t) => {
  const k = generatePrivateKey();
  const view = k.bytes;
  t.ok(view.some((b) => b !== 0));
  const copy = Buffer.from(view);
  const k2 = decodeKey(encodeKey(copy));
  t.same(k2.bytes, copy, 'round trip');
  k2.dispose();
  k2.dispose(); // idempotent
  k.dispose();
});

void t.test('invalid key text is refused without echoing it', async (t) => {
  const good = genkey();
  const bad = [
    '',
    good.slice(0, 43),
    `${good}A`,
    good.replace(/.=$/, 'B='), // non-canonical: stray bits in the last character
    Buffer.alloc(33).toString('base64'),
    Buffer.alloc(32).toString('hex'),
    good.replace(/^./, '*'),
  ];
  for (const b of bad) {
    t.throws(() => pubkey(b), { code: 'CVLAN_ERR_KEY' }, JSON.stringify(b));
    try {
      pubkey(b);
    } catch (e) {
      if (b.length > 8) t.notOk((e as Error).message.includes(b.slice(0, 20)), 'input not in the message');
    }
  }
  t.equal(pubkey(`  ${good}\n`), wg(['pubkey'], good), 'surrounding whitespace is fine, as with wg');
  t.throws(() => clamp(Buffer.alloc(31)), { code: 'CVLAN_ERR_KEY' });
  t.throws(() => publicKeyOf(Buffer.alloc(31)), { code: 'CVLAN_ERR_KEY' });
});
