#!/usr/bin/env python3
"""Independent reference for the ESP engine's tests.

1. Re-checks the published vectors the Rust tests use (RFC 7634 Appendix A,
   draft-mcgrew-gcm-test-01 cases 2/3/12, RFC 4868 §2.7.2 AUTH vectors, NIST SP 800-38A
   F.2 CBC) with Python's `cryptography` and `hashlib`, so a typo in a transcribed vector
   is caught here rather than hidden by the code under test.
2. Generates whole ESP tunnel-mode packets for combinations no document publishes
   (AES-CBC + HMAC-SHA-2, and every algorithm with extended sequence numbers) and writes
   them to esp_generated.txt, which the Rust tests read. The Rust tests never run Python.

Run: python3 gen_esp_vectors.py   (needs `pip install cryptography`)
"""
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

HERE = os.path.dirname(os.path.abspath(__file__))
h = bytes.fromhex


def aead_for(name, key):
    return ChaCha20Poly1305(key) if name == "chacha20-poly1305" else AESGCM(key)


def trailer(payload_len, align, nh):
    pad = (align - (payload_len + 2) % align) % align
    return bytes(range(1, pad + 1)) + bytes([pad, nh])


def check_published():
    # RFC 7634 Appendix A.
    keymat = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3")
    inner = h(
        "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec100007362708090a0b0c0d0e0f1011121314151617"
        "18191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"
    )
    assert len(inner) == 84, len(inner)
    esp = h(
        "0102030400000005101112131415161724039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6"
        "14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da"
        "9165b82829f641e076aaa8266b7fb0f7b11b369907e1ad43"
    )
    pt = ChaCha20Poly1305(keymat[:32]).decrypt(keymat[32:] + esp[8:16], esp[16:], esp[:8])
    assert pt == inner + trailer(84, 4, 4), "RFC 7634 A"

    # draft-mcgrew-gcm-test-01, cases 2, 3 and 12: (key||salt, esp, inner, next header).
    cases = {
        2: ("feffe9928665731c6d6a8f9467308308cafebabe",
            "0000a5f80000000afacedbaddecaf888deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c"
            "3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd426f8391b9927d0fcc984561bbbce9fc0",
            "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d001000001000000000000037369700963796265"
            "726369747902646b0000010001", 4),
        3: ("abbccddef00112233445566778899aababbccddef00112233445566778899aab11223344",
            "4a2cbfe3000000020102030405060708ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
            "748a637985771d347f0545659f14e99def842d8b42f564f52dfdd6eef4f92eadbac23990",
            "45000030 69a64000 80062690 c0a80102 9389155e 0a9e008b 2dc57ee0 00000000 70024000 20bf0000 020405b4"
            " 01010402".replace(" ", ""), 4),
        12: ("7d773d00c144c525ac619d18c84a3f47d9664267",
             "335467aeffffffff43457e9182443bc6437f86517ea595d2ca004c33388c46770c590ad6",
             "", 59),
    }
    for n, (km, esp_hex, inner_hex, nh) in cases.items():
        km, esp, inner = h(km), h(esp_hex), h(inner_hex)
        pt = AESGCM(km[:-4]).decrypt(km[-4:] + esp[8:16], esp[16:], esp[:8])
        assert pt == inner + trailer(len(inner), 4, nh), f"mcgrew case {n}: {pt.hex()}"

    # RFC 4868 §2.7.2 AUTH test cases (truncated ICVs).
    auth = [
        ("sha256", b"\x0b" * 32, b"Hi There", "198a607eb44bfbc69903a0f1cf2bbdc5"),
        ("sha256", b"Jefe" * 8, b"what do ya want for nothing?", "167f928588c5cc2eef8e3093caa0e87c"),
        ("sha256", b"\xaa" * 32, b"\xdd" * 50, "cdcb1220d1ecccea91e53aba3092f962"),
        ("sha256", bytes(range(1, 33)), b"\xcd" * 50, "372efcf9b40b35c2115b1346903d2ef4"),
        ("sha384", b"\x0b" * 48, b"Hi There", "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"),
        ("sha384", b"Jefe" * 12, b"what do ya want for nothing?", "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d"),
        ("sha512", b"\x0b" * 64, b"Hi There",
         "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"),
    ]
    for alg, key, msg, want in auth:
        got = hmac.new(key, msg, getattr(hashlib, alg)).digest()[: len(want) // 2]
        assert got.hex() == want, (alg, got.hex())

    # NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt) and F.2.5 (CBC-AES256.Encrypt).
    pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
           "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
    iv = bytes(range(16))
    for key, ct in [
        ("2b7e151628aed2a6abf7158809cf4f3c",
         "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
         "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"),
        ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
         "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
         "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"),
    ]:
        enc = Cipher(algorithms.AES(h(key)), modes.CBC(iv)).encryptor()
        assert enc.update(pt) + enc.finalize() == h(ct), key


def ipv4_packet(n):
    payload = bytes((i * 7 + n) & 0xff for i in range(20 + n))
    total = 20 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0, 64, 17, 0,
                      bytes([192, 168, 5, 7]), bytes([10, 1, 2, 3]))
    return hdr + payload


def ipv6_packet(n):
    payload = bytes((i * 13 + n) & 0xff for i in range(n))
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(payload), 17, 64,
                      bytes.fromhex("fd00000000000000000000000000abcd"),
                      bytes.fromhex("fd01000000000000000000000000000a"))
    return hdr + payload


def esp_aead(name, keymat, spi, seq, esn, inner, nh):
    iv = struct.pack("!Q", seq)  # the engine uses the 64-bit sequence number as IV
    hi, lo = seq >> 32, seq & 0xffffffff
    hdr = struct.pack("!II", spi, lo)
    aad = struct.pack("!III", spi, hi, lo) if esn else hdr
    pt = inner + trailer(len(inner), 4, nh)
    ct = aead_for(name, keymat[:-4]).encrypt(keymat[-4:] + iv, pt, aad)
    return iv, hdr + iv + ct


def esp_cbc(key, integ, ikey, spi, seq, esn, inner, nh, iv):
    hi, lo = seq >> 32, seq & 0xffffffff
    hdr = struct.pack("!II", spi, lo)
    pt = inner + trailer(len(inner), 16, nh)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(pt) + enc.finalize()
    covered = hdr + iv + ct
    mac_in = covered + (struct.pack("!I", hi) if esn else b"")
    digest = getattr(hashlib, integ)
    icv = hmac.new(ikey, mac_in, digest).digest()[: digest().digest_size // 2]
    return covered + icv


def generate():
    out = ["# Generated by gen_esp_vectors.py with Python `cryptography`; do not edit.", ""]
    seqs = {False: [1, 0x7fffffff, 0xffffffff], True: [5, 0x1_00000000, 0x2_fffffffe, 0x3_00000001]}
    n = 0
    for esn in (False, True):
        for seq in seqs[esn]:
            for enc, klen, integ in [
                ("aes-gcm-128", 16, None), ("aes-gcm-256", 32, None), ("chacha20-poly1305", 32, None),
                ("aes-cbc-128", 16, "sha256"), ("aes-cbc-256", 32, "sha384"), ("aes-cbc-128", 16, "sha512"),
                ("aes-cbc-256", 32, "sha256"),
            ]:
                n += 1
                v6 = n % 2 == 0
                inner = ipv6_packet(n * 5 % 61) if v6 else ipv4_packet(n * 3 % 57)
                nh = 41 if v6 else 4
                spi = 0xc0de0000 + n
                ekey = bytes((i * 31 + n) & 0xff for i in range(klen))
                rec = {"name": f"{enc}-{integ or 'aead'}-esn{int(esn)}-seq{seq:x}", "enc": enc,
                       "esn": int(esn), "spi": f"{spi:08x}", "seq": f"{seq:x}", "inner": inner.hex()}
                if integ is None:
                    keymat = ekey + bytes([0xa0 + n % 16, 0xb1, 0xc2, 0xd3])
                    iv, esp = esp_aead(enc, keymat, spi, seq, esn, inner, nh)
                    rec.update(integ="none", enc_key=keymat.hex(), integ_key="", iv=iv.hex(), esp=esp.hex())
                else:
                    dlen = getattr(hashlib, integ)().digest_size
                    ikey = bytes((i * 17 + 3 * n) & 0xff for i in range(dlen))
                    iv = bytes((i * 11 + n) & 0xff for i in range(16))
                    esp = esp_cbc(ekey, integ, ikey, spi, seq, esn, inner, nh, iv)
                    rec.update(integ=f"hmac-{integ}", enc_key=ekey.hex(), integ_key=ikey.hex(),
                               iv=iv.hex(), esp=esp.hex())
                for k in ("name", "enc", "integ", "esn", "spi", "seq", "enc_key", "integ_key", "iv",
                          "inner", "esp"):
                    out.append(f"{k} = {rec[k]}")
                out.append("")
    with open(os.path.join(HERE, "esp_generated.txt"), "w") as f:
        f.write("\n".join(out))
    return n


if __name__ == "__main__":
    check_published()
    print("published vectors re-checked;", generate(), "packets generated")
