#!/usr/bin/env python3
"""Known-answer values for crates/cvlan-proto/src/wireguard/, computed independently of the Rust
code: BLAKE2s/HMAC from hashlib, X25519 and ChaCha20-Poly1305 from the `cryptography` package,
XChaCha20-Poly1305 (cookie replies) from libsodium through Node's sodium-native (run from the
repository root, where node_modules holds it).

Follows the WireGuard whitepaper §5.4 (Noise_IKpsk2): two complete handshakes (with and without
a preshared key), transport messages with §5.4.6 padding, a §5.4.7 cookie reply and the MAC2
it enables. Output: one `name=hex` per line, to wireguard_vectors.txt.

    python3 crates/cvlan-proto/tests/vectors/gen_wireguard_vectors.py \
        > crates/cvlan-proto/tests/vectors/wireguard_vectors.txt
"""
import hashlib
import hmac
import json
import struct
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def H(*parts):
    return hashlib.blake2s(b"".join(parts)).digest()


def MAC(key, data):
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def HMAC(key, data):
    return hmac.new(key, data, hashlib.blake2s).digest()


def KDF(n, key, data):
    prk = HMAC(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = HMAC(prk, prev + bytes([i]))
        out.append(prev)
    return out


def AEAD(key, ctr, pt, aad):
    return ChaCha20Poly1305(key).encrypt(b"\0" * 4 + struct.pack("<Q", ctr), pt, aad)


def XAEAD(key, nonce, pt, aad):
    js = (
        "const s=require('sodium-native');const [k,n,p,a]=process.argv.slice(1).map(x=>Buffer.from(x,'hex'));"
        "const c=Buffer.alloc(p.length+16);"
        "s.crypto_aead_xchacha20poly1305_ietf_encrypt(c,p,a,null,n,k);console.log(c.toString('hex'))"
    )
    out = subprocess.run(["node", "-e", js, key.hex(), nonce.hex(), pt.hex(), aad.hex()],
                         check=True, capture_output=True, text=True).stdout.strip()
    return bytes.fromhex(out)


def priv(b):
    return X25519PrivateKey.from_private_bytes(b)


def pub(k):
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def DH(k, p):
    return k.exchange(X25519PublicKey.from_public_bytes(p))


out = []


def emit(name, value):
    out.append(f"{name}={value.hex() if isinstance(value, bytes) else value}")


C0 = H(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
H0 = H(C0, b"WireGuard v1 zx2c4 Jason@zx2c4.com")
emit("initial_chaining_key", C0)
emit("initial_hash", H0)

# KDF3 (HKDF over HMAC-BLAKE2s) on fixed inputs.
t1, t2, t3 = KDF(3, bytes(range(32)), b"input key material")
emit("kdf_key", bytes(range(32)))
emit("kdf_input", b"input key material")
emit("kdf_t1", t1)
emit("kdf_t2", t2)
emit("kdf_t3", t3)

# TAI64N of 2023-11-14T22:13:20.123456789Z with the low 24 bits of the nanoseconds cleared.
secs, nanos = 1700000000, 123456789
emit("tai_unix_secs", str(secs))
emit("tai_nanos", str(nanos))
emit("tai64n", struct.pack(">QI", (1 << 62) + 10 + secs, nanos & ~0xFFFFFF))


def handshake(tag, psk):
    s_i, s_r = bytes([0x11] * 32), bytes([0x22] * 32)
    e_i, e_r = bytes([0x33] * 32), bytes([0x44] * 32)
    idx_i, idx_r = 0x01020304, 0x0A0B0C0D
    ts = struct.pack(">QI", (1 << 62) + 10 + secs, nanos & ~0xFFFFFF)
    Si, Sr, Ei, Er = priv(s_i), priv(s_r), priv(e_i), priv(e_r)
    Si_pub, Sr_pub, Ei_pub, Er_pub = pub(Si), pub(Sr), pub(Ei), pub(Er)

    C, Hh = C0, H(H0, Sr_pub)
    (C,) = KDF(1, C, Ei_pub)
    Hh = H(Hh, Ei_pub)
    C, k = KDF(2, C, DH(Ei, Sr_pub))
    enc_static = AEAD(k, 0, Si_pub, Hh)
    Hh = H(Hh, enc_static)
    C, k = KDF(2, C, DH(Si, Sr_pub))
    enc_ts = AEAD(k, 0, ts, Hh)
    Hh = H(Hh, enc_ts)
    init = b"\x01\0\0\0" + struct.pack("<I", idx_i) + Ei_pub + enc_static + enc_ts
    init += MAC(H(b"mac1----", Sr_pub), init) + bytes(16)
    assert len(init) == 148

    (C,) = KDF(1, C, Er_pub)
    Hh = H(Hh, Er_pub)
    (C,) = KDF(1, C, DH(Er, Ei_pub))
    (C,) = KDF(1, C, DH(Er, Si_pub))
    C, tau, k = KDF(3, C, psk)
    Hh = H(Hh, tau)
    empty = AEAD(k, 0, b"", Hh)
    resp = b"\x02\0\0\0" + struct.pack("<I", idx_r) + struct.pack("<I", idx_i) + Er_pub + empty
    resp += MAC(H(b"mac1----", Si_pub), resp) + bytes(16)
    assert len(resp) == 92
    t_i_send, t_i_recv = KDF(2, C, b"")

    for name, v in [("s_i", s_i), ("s_r", s_r), ("e_i", e_i), ("e_r", e_r), ("psk", psk),
                    ("ts", ts), ("s_i_pub", Si_pub), ("s_r_pub", Sr_pub), ("initiation", init),
                    ("response", resp), ("t_i_send", t_i_send), ("t_i_recv", t_i_recv)]:
        emit(f"{tag}_{name}", v)
    emit(f"{tag}_idx_i", struct.pack(">I", idx_i))
    emit(f"{tag}_idx_r", struct.pack(">I", idx_r))

    # §5.4.6: a 21-byte packet padded to 32, initiator to responder, counter 0; then an empty
    # keepalive from the responder, counter 0.
    packet = bytes([0x45]) + bytes(range(1, 21))
    padded = packet + bytes(32 - len(packet))
    data = b"\x04\0\0\0" + struct.pack("<I", idx_r) + struct.pack("<Q", 0) + AEAD(t_i_send, 0, padded, b"")
    emit(f"{tag}_packet", packet)
    emit(f"{tag}_transport_i2r", data)
    keepalive = b"\x04\0\0\0" + struct.pack("<I", idx_i) + struct.pack("<Q", 0) + AEAD(t_i_recv, 0, b"", b"")
    emit(f"{tag}_keepalive_r2i", keepalive)
    return init, Sr_pub


handshake("nopsk", bytes(32))
init, Sr_pub = handshake("psk", bytes(range(32)))

# §5.4.7: the responder, under load, answers the PSK initiation from 192.0.2.1:51820 with a cookie.
# The cookie is MAC(secret, source address); this implementation encodes the address as the IP
# octets followed by the big-endian port (only the responder ever recomputes it).
secret, nonce = bytes([0x55] * 32), bytes([0x66] * 24)
addr = bytes([192, 0, 2, 1]) + struct.pack(">H", 51820)
cookie = MAC(secret, addr)
mac1 = init[116:132]
sealed = XAEAD(H(b"cookie--", Sr_pub), nonce, cookie, mac1)
reply = b"\x03\0\0\0" + init[4:8] + nonce + sealed
assert len(reply) == 64
emit("cookie_secret", secret)
emit("cookie_nonce", nonce)
emit("cookie", cookie)
emit("cookie_reply", reply)
# The retried initiation carries MAC2 = MAC(cookie, everything before MAC2).
emit("initiation_mac2", MAC(cookie, init[:132]))

# draft-irtf-cfrg-xchacha-03 §A.3.1 inputs, encrypted by libsodium (the draft's tag is pinned in
# the Rust test separately).
xk = bytes(range(0x80, 0xA0))
xn = bytes(range(0x40, 0x58))
xa = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
xp = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      b"future, sunscreen would be it.")
emit("xaead", XAEAD(xk, xn, xp, xa))

print("\n".join(out))
