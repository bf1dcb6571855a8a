//! ESP transforms: the AEADs of RFC 4106 (AES-GCM, 16-octet ICV) and RFC 7634
//! (ChaCha20-Poly1305) through ring, and AES-CBC (RFC 3602) with HMAC-SHA-2 (RFC 4868)
//! through the `aes`/`cbc` crates and ring's HMAC.
//!
//! Every function here works in place on a caller's buffer and allocates nothing.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit};
use rand_core::{CryptoRng, RngCore};
use ring::{aead, hmac};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::packet::{ESP_HEADER_LEN, MIN_ALIGN};
use super::sa::SaError;
use super::DropReason;

// --- Specification constants -----------------------------------------------------------

/// IKEv2 transform type 1 IDs (RFC 7296 §3.3.2, IANA "Transform Type 1"), as charon names them.
pub const ENCR_AES_CBC: u16 = 12;
/// RFC 4106 §8.1: AES-GCM with a 16-octet ICV.
pub const ENCR_AES_GCM_16: u16 = 20;
/// RFC 7634 §4.
pub const ENCR_CHACHA20_POLY1305: u16 = 28;
/// IKEv2 transform type 3 IDs (RFC 4868 §4).
pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
pub const AUTH_HMAC_SHA2_512_256: u16 = 14;

/// RFC 4106 §8.1 / RFC 7634 §4: the keying material ends with a 4-octet salt.
pub const AEAD_SALT_LEN: usize = 4;
/// RFC 4106 §3.1 / RFC 7634 §2: the explicit IV on the wire is 8 octets.
pub const AEAD_IV_LEN: usize = 8;
/// RFC 4106 §6 (16-octet variant) / RFC 7634 §2: the ICV is the full 16-octet tag.
pub const AEAD_ICV_LEN: usize = 16;
/// RFC 3602 §3: the CBC IV is one AES block.
pub const CBC_IV_LEN: usize = 16;
/// RFC 3602 §2.4: the ciphertext is a whole number of 16-octet AES blocks.
pub const CBC_BLOCK_LEN: usize = 16;
/// RFC 4106 §5: AAD is SPI || Sequence Number, with the high ESN half in between when
/// extended sequence numbers are in use; at most 12 octets.
const MAX_AAD_LEN: usize = 12;

/// Encryption (or combined mode) transform of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionAlgorithm {
    /// ENCR_AES_GCM_16 with a 128-bit key (RFC 4106).
    AesGcm128,
    /// ENCR_AES_GCM_16 with a 256-bit key (RFC 4106).
    AesGcm256,
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
    /// ENCR_AES_CBC with a 128-bit key (RFC 3602); needs an integrity algorithm.
    AesCbc128,
    /// ENCR_AES_CBC with a 256-bit key (RFC 3602); needs an integrity algorithm.
    AesCbc256,
}

impl EncryptionAlgorithm {
    /// Maps an IKEv2 transform ID and the length of the key charon hands over (which for the
    /// AEADs includes the 4-octet salt) to an algorithm.
    pub fn from_ikev2(transform_id: u16, enc_key_len: usize) -> Option<EncryptionAlgorithm> {
        use EncryptionAlgorithm::*;
        let alg = match (transform_id, enc_key_len) {
            (ENCR_AES_GCM_16, 20) => AesGcm128,
            (ENCR_AES_GCM_16, 36) => AesGcm256,
            (ENCR_CHACHA20_POLY1305, 36) => ChaCha20Poly1305,
            (ENCR_AES_CBC, 16) => AesCbc128,
            (ENCR_AES_CBC, 32) => AesCbc256,
            _ => return None,
        };
        Some(alg)
    }

    /// Whether this is a combined-mode (AEAD) transform, which takes no integrity algorithm.
    pub fn is_aead(self) -> bool {
        !matches!(
            self,
            EncryptionAlgorithm::AesCbc128 | EncryptionAlgorithm::AesCbc256
        )
    }

    /// Length of the encryption key as charon passes it (key plus salt for the AEADs).
    pub fn key_len(self) -> usize {
        match self {
            EncryptionAlgorithm::AesGcm128 => 16 + AEAD_SALT_LEN,
            EncryptionAlgorithm::AesGcm256 => 32 + AEAD_SALT_LEN,
            EncryptionAlgorithm::ChaCha20Poly1305 => 32 + AEAD_SALT_LEN,
            EncryptionAlgorithm::AesCbc128 => 16,
            EncryptionAlgorithm::AesCbc256 => 32,
        }
    }
}

/// Integrity transform for AES-CBC SAs (RFC 4868).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegrityAlgorithm {
    /// AUTH_HMAC_SHA2_256_128: 32-octet key, ICV truncated to 16 octets.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192: 48-octet key, ICV truncated to 24 octets.
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256: 64-octet key, ICV truncated to 32 octets.
    HmacSha512_256,
}

impl IntegrityAlgorithm {
    /// Maps an IKEv2 transform type 3 ID.
    pub fn from_ikev2(transform_id: u16) -> Option<IntegrityAlgorithm> {
        match transform_id {
            AUTH_HMAC_SHA2_256_128 => Some(IntegrityAlgorithm::HmacSha256_128),
            AUTH_HMAC_SHA2_384_192 => Some(IntegrityAlgorithm::HmacSha384_192),
            AUTH_HMAC_SHA2_512_256 => Some(IntegrityAlgorithm::HmacSha512_256),
            _ => None,
        }
    }

    /// RFC 4868 §2.1.1: the key is as long as the hash output.
    pub fn key_len(self) -> usize {
        match self {
            IntegrityAlgorithm::HmacSha256_128 => 32,
            IntegrityAlgorithm::HmacSha384_192 => 48,
            IntegrityAlgorithm::HmacSha512_256 => 64,
        }
    }

    /// RFC 4868 §2.3: the ICV is the leftmost half of the HMAC output.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    fn ring_algorithm(self) -> hmac::Algorithm {
        match self {
            IntegrityAlgorithm::HmacSha256_128 => hmac::HMAC_SHA256,
            IntegrityAlgorithm::HmacSha384_192 => hmac::HMAC_SHA384,
            IntegrityAlgorithm::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }
}

/// A keyed HMAC whose output is truncated to the ESP ICV length (RFC 4868 §2.3).
pub(crate) struct Integrity {
    key: hmac::Key,
    icv_len: usize,
}

impl Integrity {
    pub(crate) fn new(alg: IntegrityAlgorithm, key: &[u8]) -> Integrity {
        Integrity {
            key: hmac::Key::new(alg.ring_algorithm(), key),
            icv_len: alg.icv_len(),
        }
    }

    pub(crate) fn icv_len(&self) -> usize {
        self.icv_len
    }

    /// HMAC over the concatenation of `parts`, truncated; written to `out[..icv_len]`.
    pub(crate) fn compute(&self, parts: &[&[u8]], out: &mut [u8]) {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p);
        }
        let tag = ctx.sign();
        out[..self.icv_len].copy_from_slice(&tag.as_ref()[..self.icv_len]);
    }

    /// Constant-time comparison of the truncated HMAC against `icv`.
    pub(crate) fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        let mut expect = [0u8; 32];
        self.compute(parts, &mut expect);
        let ok = expect[..self.icv_len].ct_eq(icv).into();
        expect.zeroize();
        ok
    }
}

/// An AES key schedule for CBC; the `aes` crate zeroizes it on drop. Boxed because the
/// two schedules differ much in size; used by reference, never copied per packet.
pub(crate) enum AesKey {
    Aes128(Box<aes::Aes128>),
    Aes256(Box<aes::Aes256>),
}

impl AesKey {
    pub(crate) fn new(key: &[u8]) -> Option<AesKey> {
        use aes::cipher::KeyInit;
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .ok()
                .map(|k| AesKey::Aes128(Box::new(k))),
            32 => aes::Aes256::new_from_slice(key)
                .ok()
                .map(|k| AesKey::Aes256(Box::new(k))),
            _ => None,
        }
    }

    /// CBC-encrypts `buf` (a whole number of blocks) in place.
    pub(crate) fn cbc_encrypt(&self, iv: &[u8; CBC_IV_LEN], buf: &mut [u8]) {
        let n = buf.len();
        debug_assert_eq!(n % CBC_BLOCK_LEN, 0);
        // NoPadding cannot fail on block-aligned input; the length check is the contract.
        let _ = match self {
            AesKey::Aes128(k) => cbc::Encryptor::<&aes::Aes128>::inner_iv_init(k, iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, n)
                .map(|_| ()),
            AesKey::Aes256(k) => cbc::Encryptor::<&aes::Aes256>::inner_iv_init(k, iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, n)
                .map(|_| ()),
        };
    }

    /// CBC-decrypts `buf` (a whole number of blocks) in place.
    pub(crate) fn cbc_decrypt(&self, iv: &[u8; CBC_IV_LEN], buf: &mut [u8]) {
        debug_assert_eq!(buf.len() % CBC_BLOCK_LEN, 0);
        let _ = match self {
            AesKey::Aes128(k) => cbc::Decryptor::<&aes::Aes128>::inner_iv_init(k, iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(|_| ()),
            AesKey::Aes256(k) => cbc::Decryptor::<&aes::Aes256>::inner_iv_init(k, iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(|_| ()),
        };
    }
}

/// The keyed transform of one SA.
// One per SA and long-lived: the size gap costs nothing, a Box would cost an indirection
// on the AEAD hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform {
    Aead {
        key: aead::LessSafeKey,
        salt: [u8; AEAD_SALT_LEN],
    },
    Cbc {
        aes: AesKey,
        integ: Integrity,
    },
}

impl Drop for Transform {
    fn drop(&mut self) {
        // ring keeps its key schedules opaque; the salt at least is ours to clear.
        if let Transform::Aead { salt, .. } = self {
            salt.zeroize();
        }
    }
}

/// Where the pieces of one ESP packet sit inside the packet slice.
pub(crate) struct Layout {
    pub iv_len: usize,
    pub icv_len: usize,
}

impl Transform {
    pub(crate) fn new(
        enc: EncryptionAlgorithm,
        enc_key: &[u8],
        integ: Option<(IntegrityAlgorithm, &[u8])>,
    ) -> Result<Transform, SaError> {
        if enc_key.len() != enc.key_len() {
            return Err(SaError::BadKeyLength {
                expected: enc.key_len(),
                got: enc_key.len(),
            });
        }
        if enc.is_aead() {
            if integ.is_some() {
                return Err(SaError::UnexpectedIntegrity);
            }
            let ring_alg = match enc {
                EncryptionAlgorithm::AesGcm128 => &aead::AES_128_GCM,
                EncryptionAlgorithm::AesGcm256 => &aead::AES_256_GCM,
                _ => &aead::CHACHA20_POLY1305,
            };
            let split = enc_key.len() - AEAD_SALT_LEN;
            let unbound = aead::UnboundKey::new(ring_alg, &enc_key[..split]).map_err(|_| {
                SaError::BadKeyLength {
                    expected: enc.key_len(),
                    got: enc_key.len(),
                }
            })?;
            let mut salt = [0u8; AEAD_SALT_LEN];
            salt.copy_from_slice(&enc_key[split..]);
            Ok(Transform::Aead {
                key: aead::LessSafeKey::new(unbound),
                salt,
            })
        } else {
            let (ialg, ikey) = integ.ok_or(SaError::MissingIntegrity)?;
            if ikey.len() != ialg.key_len() {
                return Err(SaError::BadKeyLength {
                    expected: ialg.key_len(),
                    got: ikey.len(),
                });
            }
            let aes = AesKey::new(enc_key).ok_or(SaError::BadKeyLength {
                expected: enc.key_len(),
                got: enc_key.len(),
            })?;
            Ok(Transform::Cbc {
                aes,
                integ: Integrity::new(ialg, ikey),
            })
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        match self {
            Transform::Aead { .. } => Layout {
                iv_len: AEAD_IV_LEN,
                icv_len: AEAD_ICV_LEN,
            },
            Transform::Cbc { integ, .. } => Layout {
                iv_len: CBC_IV_LEN,
                icv_len: integ.icv_len(),
            },
        }
    }

    /// Alignment of payload + padding + trailer: the cipher block, at least 4 (RFC 4303 §2.4).
    pub(crate) fn align(&self) -> usize {
        match self {
            Transform::Aead { .. } => MIN_ALIGN,
            Transform::Cbc { .. } => CBC_BLOCK_LEN,
        }
    }

    /// Protects `pkt` = header || IV slot || plaintext (payload + trailer) || ICV slot in
    /// place. The header (SPI, low sequence number) must already be written.
    /// `iv` is the explicit IV for the AEADs (RFC 4106 §3.1: unique per packet, here the
    /// 64-bit sequence number); CBC draws its IV from `rng` (RFC 3602 §2.3: unpredictable).
    pub(crate) fn seal<R: RngCore + CryptoRng>(
        &self,
        pkt: &mut [u8],
        seq_hi: Option<u32>,
        aead_iv: [u8; AEAD_IV_LEN],
        cbc_iv: Option<[u8; CBC_IV_LEN]>,
        rng: &mut R,
    ) {
        let Layout { iv_len, icv_len } = self.layout();
        let body_start = ESP_HEADER_LEN + iv_len;
        let icv_start = pkt.len() - icv_len;
        match self {
            Transform::Aead { key, salt } => {
                pkt[ESP_HEADER_LEN..body_start].copy_from_slice(&aead_iv);
                let (aad, aad_len) = aad(pkt, seq_hi);
                let nonce = nonce(salt, &aead_iv);
                let (head, icv) = pkt.split_at_mut(icv_start);
                // Cannot fail: the input is far below the AEADs' per-message limits.
                if let Ok(tag) = key.seal_in_place_separate_tag(
                    nonce,
                    aead::Aad::from(&aad[..aad_len]),
                    &mut head[body_start..],
                ) {
                    icv.copy_from_slice(tag.as_ref());
                }
            }
            Transform::Cbc { aes, integ } => {
                let iv = cbc_iv.unwrap_or_else(|| {
                    let mut iv = [0u8; CBC_IV_LEN];
                    rng.fill_bytes(&mut iv);
                    iv
                });
                pkt[ESP_HEADER_LEN..body_start].copy_from_slice(&iv);
                aes.cbc_encrypt(&iv, &mut pkt[body_start..icv_start]);
                let (covered, icv) = pkt.split_at_mut(icv_start);
                // RFC 4303 §2.2.1: with ESN the high 32 bits are appended (not sent) for the ICV.
                let hi = seq_hi.map(u32::to_be_bytes);
                let hi_part: &[u8] = hi.as_ref().map_or(&[], |h| &h[..]);
                integ.compute(&[covered, hi_part], icv);
            }
        }
    }

    /// Verifies and decrypts `pkt` (a whole ESP packet) in place; on success the plaintext
    /// sits at `ESP_HEADER_LEN + iv_len .. len - icv_len`.
    pub(crate) fn open(&self, pkt: &mut [u8], seq_hi: Option<u32>) -> Result<(), DropReason> {
        let Layout { iv_len, icv_len } = self.layout();
        let body_start = ESP_HEADER_LEN + iv_len;
        let icv_start = pkt.len() - icv_len;
        match self {
            Transform::Aead { key, salt } => {
                let mut iv = [0u8; AEAD_IV_LEN];
                iv.copy_from_slice(&pkt[ESP_HEADER_LEN..body_start]);
                let (aad, aad_len) = aad(pkt, seq_hi);
                key.open_in_place(
                    nonce(salt, &iv),
                    aead::Aad::from(&aad[..aad_len]),
                    &mut pkt[body_start..],
                )
                .map(|_| ())
                .map_err(|_| DropReason::AuthFailed)
            }
            Transform::Cbc { aes, integ } => {
                // CBC_BLOCK_LEN is a power of two.
                if (icv_start - body_start) & (CBC_BLOCK_LEN - 1) != 0 {
                    return Err(DropReason::Truncated);
                }
                let hi = seq_hi.map(u32::to_be_bytes);
                let hi_part: &[u8] = hi.as_ref().map_or(&[], |h| &h[..]);
                let (covered, icv) = pkt.split_at_mut(icv_start);
                if !integ.verify(&[covered, hi_part], icv) {
                    return Err(DropReason::AuthFailed);
                }
                let mut iv = [0u8; CBC_IV_LEN];
                iv.copy_from_slice(&covered[ESP_HEADER_LEN..body_start]);
                aes.cbc_decrypt(&iv, &mut covered[body_start..]);
                Ok(())
            }
        }
    }
}

/// RFC 4106 §4 / RFC 7634 §2: nonce = salt || explicit IV.
fn nonce(salt: &[u8; AEAD_SALT_LEN], iv: &[u8; AEAD_IV_LEN]) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[..AEAD_SALT_LEN].copy_from_slice(salt);
    n[AEAD_SALT_LEN..].copy_from_slice(iv);
    aead::Nonce::assume_unique_for_key(n)
}

/// RFC 4106 §5 / RFC 7634 §2.1: AAD = SPI || Seq (8 octets) or SPI || Seq-hi || Seq-lo (12).
fn aad(pkt: &[u8], seq_hi: Option<u32>) -> ([u8; MAX_AAD_LEN], usize) {
    let mut a = [0u8; MAX_AAD_LEN];
    a[..4].copy_from_slice(&pkt[..4]);
    match seq_hi {
        Some(hi) => {
            a[4..8].copy_from_slice(&hi.to_be_bytes());
            a[8..12].copy_from_slice(&pkt[4..8]);
            (a, 12)
        }
        None => {
            a[4..8].copy_from_slice(&pkt[4..8]);
            (a, 8)
        }
    }
}
