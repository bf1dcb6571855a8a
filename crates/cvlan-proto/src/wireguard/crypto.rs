//! The primitives of §5.4 ("Protocol & Cryptography") as the whitepaper names them: HASH, MAC,
//! HMAC, KDF1..3, AEAD, XAEAD and DH, on well-kept crates. Nothing here is hand-written crypto.

use blake2::digest::{FixedOutput, KeyInit, Mac as _, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, AeadInPlace, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, XChaCha20Poly1305, XNonce};
use hmac::SimpleHmac;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub type Key32 = [u8; 32];

/// HASH(input): BLAKE2s-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> Key32 {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// MAC(key, input): keyed BLAKE2s with a 16-byte output.
pub fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
        .expect("32-byte key");
    for p in parts {
        Update::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

/// HMAC(key, input) with BLAKE2s (RFC 2104).
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> Key32 {
    let mut m = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        hmac::Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// KDF_n(key, input) (§5.4, HKDF with HMAC-BLAKE2s): returns n derived 32-byte values.
pub fn kdf<const N: usize>(key: &[u8], input: &[u8]) -> [Zeroizing<Key32>; N] {
    let prk = Zeroizing::new(hmac(key, &[input]));
    let mut out: [Zeroizing<Key32>; N] = std::array::from_fn(|_| Zeroizing::new([0u8; 32]));
    let mut prev: Option<Key32> = None;
    for (i, slot) in out.iter_mut().enumerate() {
        let ctr = [(i + 1) as u8];
        let t = match &prev {
            None => hmac(&prk[..], &[&ctr]),
            Some(p) => hmac(&prk[..], &[p, &ctr]),
        };
        **slot = t;
        prev = Some(t);
    }
    if let Some(mut p) = prev {
        zeroize::Zeroize::zeroize(&mut p);
    }
    out
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(n)
}

/// AEAD(key, counter, plaintext, aad): ChaCha20-Poly1305 with a 64-bit little-endian counter nonce.
pub fn aead_seal(key: &Key32, counter: u64, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            &nonce(counter),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("ChaCha20-Poly1305 cannot fail to encrypt")
}

/// Opens what `aead_seal` produced; `None` if the tag does not verify.
pub fn aead_open(key: &Key32, counter: u64, ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            &nonce(counter),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// XAEAD(key, nonce, plaintext, aad): XChaCha20-Poly1305 (cookie replies, §5.4.7).
pub fn xaead_seal(key: &Key32, nonce: &[u8; 24], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    XChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 cannot fail to encrypt")
}

pub fn xaead_open(key: &Key32, nonce: &[u8; 24], ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    if buf.len() < 16 {
        return None;
    }
    let tag_at = buf.len() - 16;
    let tag = chacha20poly1305::Tag::clone_from_slice(&buf[tag_at..]);
    buf.truncate(tag_at);
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buf, &tag)
        .ok()?;
    Some(buf)
}

/// DH(private, public): X25519. `None` for an all-zero result (a low-order public key), which
/// the protocol must refuse rather than derive keys from.
pub fn dh(private: &StaticSecret, public: &[u8; 32]) -> Option<Zeroizing<Key32>> {
    let shared = private.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return None;
    }
    Some(Zeroizing::new(*shared.as_bytes()))
}

pub fn public_key(private: &StaticSecret) -> [u8; 32] {
    PublicKey::from(private).to_bytes()
}
