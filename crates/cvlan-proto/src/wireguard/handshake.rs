//! The Noise_IKpsk2 handshake of §5.4.2–5.4.3 as an explicit state machine.
//!
//! States per peer: `None` → (we initiate) `InitiationSent` → (response consumed) keys;
//! or, as responder, an initiation is consumed and answered in one step (the responder keeps no
//! handshake state, only the resulting keypair, which waits for the first data message).
//! Ephemeral keys come from the caller's RNG; timestamps from the caller's wall clock.

use super::constants::*;
use super::crypto::{aead_open, aead_seal, dh, hash, kdf, mac, public_key, Key32};
use super::messages::{init, resp, write_type};
use super::tai64n::Tai64n;
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// Our static identity with the values derived from it once.
pub struct Identity {
    pub(crate) private: StaticSecret,
    pub public: [u8; 32],
    /// HASH(LABEL_MAC1 || our public key): checks MAC1 of messages sent to us.
    pub(crate) mac1_key: Key32,
    /// HASH(LABEL_COOKIE || our public key): encrypts cookie replies we send.
    pub(crate) cookie_key: Key32,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("private", &"<redacted>")
            .finish()
    }
}

impl Identity {
    pub fn new(private: [u8; 32]) -> Identity {
        let private = StaticSecret::from(private);
        let public = public_key(&private);
        Identity {
            mac1_key: hash(&[LABEL_MAC1, &public]),
            cookie_key: hash(&[LABEL_COOKIE, &public]),
            private,
            public,
        }
    }
    pub fn private_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.private.to_bytes())
    }
}

/// What we know of a peer for the handshake.
pub struct PeerKeys {
    pub remote: [u8; 32],
    pub psk: Zeroizing<[u8; 32]>,
    /// DH(our static, their static), computed once per identity; `None` if low-order.
    pub(crate) static_static: Option<Zeroizing<Key32>>,
    /// HASH(LABEL_MAC1 || their public key): MAC1 of messages we send them.
    pub(crate) mac1_key: Key32,
    /// HASH(LABEL_COOKIE || their public key): decrypts cookie replies they send us.
    pub(crate) cookie_key: Key32,
}

impl PeerKeys {
    pub fn new(identity: Option<&Identity>, remote: [u8; 32], psk: [u8; 32]) -> PeerKeys {
        PeerKeys {
            static_static: identity.and_then(|i| dh(&i.private, &remote)),
            mac1_key: hash(&[LABEL_MAC1, &remote]),
            cookie_key: hash(&[LABEL_COOKIE, &remote]),
            remote,
            psk: Zeroizing::new(psk),
        }
    }
}

/// Ck and H at the start of every handshake (§5.4.2): computed from the constants.
pub fn initial_chain_and_hash() -> (Key32, Key32) {
    let ck = hash(&[CONSTRUCTION]);
    let h = hash(&[&ck, IDENTIFIER]);
    (ck, h)
}

/// Handshake state of one peer.
pub enum State {
    None,
    /// We sent an initiation with this sender index and wait for the response.
    InitiationSent {
        local_index: u32,
        ephemeral: StaticSecret,
        chaining: Zeroizing<Key32>,
        hash: Key32,
    },
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::None => f.write_str("None"),
            State::InitiationSent { local_index, .. } => {
                write!(f, "InitiationSent({local_index:#x})")
            }
        }
    }
}

/// The symmetric session keys a completed handshake yields.
pub struct SessionKeys {
    pub send: Zeroizing<Key32>,
    pub recv: Zeroizing<Key32>,
    pub local_index: u32,
    pub remote_index: u32,
    pub initiator: bool,
}

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    Decrypt,
    LowOrder,
    NoIdentity,
    UnexpectedResponse,
}

fn mix_hash(h: &Key32, data: &[u8]) -> Key32 {
    hash(&[h, data])
}

/// §5.4.2: builds an initiation (MACs left zero; see `cookie::stamp`). Returns the message and
/// the state to keep until the response comes.
pub fn create_initiation<R: RngCore + CryptoRng>(
    identity: &Identity,
    peer: &PeerKeys,
    local_index: u32,
    timestamp: Tai64n,
    rng: &mut R,
) -> Result<([u8; INITIATION_LEN], State), HandshakeError> {
    let ss = peer
        .static_static
        .as_ref()
        .ok_or(HandshakeError::LowOrder)?;
    let (ck0, h0) = initial_chain_and_hash();
    let mut h = mix_hash(&h0, &peer.remote);
    let ephemeral = StaticSecret::random_from_rng(&mut *rng);
    let e_pub = public_key(&ephemeral);
    let [ck] = kdf::<1>(&ck0, &e_pub);
    h = mix_hash(&h, &e_pub);
    let es = dh(&ephemeral, &peer.remote).ok_or(HandshakeError::LowOrder)?;
    let [ck, k] = kdf::<2>(&ck[..], &es[..]);
    let enc_static = aead_seal(&k, 0, &identity.public, &h);
    h = mix_hash(&h, &enc_static);
    let [ck, k] = kdf::<2>(&ck[..], &ss[..]);
    let enc_ts = aead_seal(&k, 0, &timestamp, &h);
    h = mix_hash(&h, &enc_ts);

    let mut msg = [0u8; INITIATION_LEN];
    write_type(&mut msg, MSG_INITIATION);
    msg[init::SENDER..init::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    msg[init::EPHEMERAL..init::STATIC].copy_from_slice(&e_pub);
    msg[init::STATIC..init::TIMESTAMP].copy_from_slice(&enc_static);
    msg[init::TIMESTAMP..init::MAC1].copy_from_slice(&enc_ts);
    Ok((
        msg,
        State::InitiationSent {
            local_index,
            ephemeral,
            chaining: ck,
            hash: h,
        },
    ))
}

/// An initiation decrypted by the responder, before it knows whether it is acceptable.
pub struct ConsumedInitiation {
    pub remote_static: [u8; 32],
    pub remote_index: u32,
    pub timestamp: Tai64n,
    remote_ephemeral: [u8; 32],
    chaining: Zeroizing<Key32>,
    hash: Key32,
}

/// §5.4.2, responder side: decrypts an initiation (MAC1 already checked by the caller). The
/// caller then finds the peer by `remote_static`, checks the timestamp and answers.
pub fn consume_initiation(
    identity: &Identity,
    msg: &[u8; INITIATION_LEN],
) -> Result<ConsumedInitiation, HandshakeError> {
    let (ck0, h0) = initial_chain_and_hash();
    let mut h = mix_hash(&h0, &identity.public);
    let mut e_pub = [0u8; 32];
    e_pub.copy_from_slice(&msg[init::EPHEMERAL..init::STATIC]);
    let [ck] = kdf::<1>(&ck0, &e_pub);
    h = mix_hash(&h, &e_pub);
    let es = dh(&identity.private, &e_pub).ok_or(HandshakeError::LowOrder)?;
    let [ck, k] = kdf::<2>(&ck[..], &es[..]);
    let enc_static = &msg[init::STATIC..init::TIMESTAMP];
    let s = aead_open(&k, 0, enc_static, &h).ok_or(HandshakeError::Decrypt)?;
    let mut remote_static = [0u8; 32];
    remote_static.copy_from_slice(&s);
    h = mix_hash(&h, enc_static);
    let ss = dh(&identity.private, &remote_static).ok_or(HandshakeError::LowOrder)?;
    let [ck, k] = kdf::<2>(&ck[..], &ss[..]);
    let enc_ts = &msg[init::TIMESTAMP..init::MAC1];
    let ts = aead_open(&k, 0, enc_ts, &h).ok_or(HandshakeError::Decrypt)?;
    let mut timestamp = [0u8; 12];
    timestamp.copy_from_slice(&ts);
    h = mix_hash(&h, enc_ts);
    Ok(ConsumedInitiation {
        remote_static,
        remote_index: super::messages::le32(&msg[init::SENDER..]),
        timestamp,
        remote_ephemeral: e_pub,
        chaining: ck,
        hash: h,
    })
}

/// §5.4.3: answers a consumed initiation; yields the response (MACs zero) and the keys.
pub fn create_response<R: RngCore + CryptoRng>(
    peer: &PeerKeys,
    init: &ConsumedInitiation,
    local_index: u32,
    rng: &mut R,
) -> Result<([u8; RESPONSE_LEN], SessionKeys), HandshakeError> {
    let ephemeral = StaticSecret::random_from_rng(&mut *rng);
    let e_pub = public_key(&ephemeral);
    let [ck] = kdf::<1>(&init.chaining[..], &e_pub);
    let mut h = mix_hash(&init.hash, &e_pub);
    let ee = dh(&ephemeral, &init.remote_ephemeral).ok_or(HandshakeError::LowOrder)?;
    let [ck] = kdf::<1>(&ck[..], &ee[..]);
    let se = dh(&ephemeral, &peer.remote).ok_or(HandshakeError::LowOrder)?;
    let [ck] = kdf::<1>(&ck[..], &se[..]);
    let [ck, t, k] = kdf::<3>(&ck[..], &peer.psk[..]);
    h = mix_hash(&h, &t[..]);
    let empty = aead_seal(&k, 0, &[], &h);

    let mut msg = [0u8; RESPONSE_LEN];
    write_type(&mut msg, MSG_RESPONSE);
    msg[resp::SENDER..resp::SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    msg[resp::RECEIVER..resp::RECEIVER + 4].copy_from_slice(&init.remote_index.to_le_bytes());
    msg[resp::EPHEMERAL..resp::EMPTY].copy_from_slice(&e_pub);
    msg[resp::EMPTY..resp::MAC1].copy_from_slice(&empty);
    let [t_recv, t_send] = kdf::<2>(&ck[..], &[]);
    Ok((
        msg,
        SessionKeys {
            send: t_send,
            recv: t_recv,
            local_index,
            remote_index: init.remote_index,
            initiator: false,
        },
    ))
}

/// §5.4.3, initiator side: consumes the response to our initiation.
pub fn consume_response(
    identity: &Identity,
    peer: &PeerKeys,
    state: &State,
    msg: &[u8; RESPONSE_LEN],
) -> Result<SessionKeys, HandshakeError> {
    let State::InitiationSent {
        local_index,
        ephemeral,
        chaining,
        hash: h0,
    } = state
    else {
        return Err(HandshakeError::UnexpectedResponse);
    };
    let mut e_pub = [0u8; 32];
    e_pub.copy_from_slice(&msg[resp::EPHEMERAL..resp::EMPTY]);
    let [ck] = kdf::<1>(&chaining[..], &e_pub);
    let mut h = mix_hash(h0, &e_pub);
    let ee = dh(ephemeral, &e_pub).ok_or(HandshakeError::LowOrder)?;
    let [ck] = kdf::<1>(&ck[..], &ee[..]);
    let se = dh(&identity.private, &e_pub).ok_or(HandshakeError::LowOrder)?;
    let [ck] = kdf::<1>(&ck[..], &se[..]);
    let [ck, t, k] = kdf::<3>(&ck[..], &peer.psk[..]);
    h = mix_hash(&h, &t[..]);
    aead_open(&k, 0, &msg[resp::EMPTY..resp::MAC1], &h).ok_or(HandshakeError::Decrypt)?;
    let [t_send, t_recv] = kdf::<2>(&ck[..], &[]);
    Ok(SessionKeys {
        send: t_send,
        recv: t_recv,
        local_index: *local_index,
        remote_index: super::messages::le32(&msg[resp::SENDER..]),
        initiator: true,
    })
}

/// MAC1 over everything before it (§5.4.4), with the receiver's MAC1 key.
pub fn mac1(key: &Key32, msg_before_mac1: &[u8]) -> [u8; 16] {
    mac(key, &[msg_before_mac1])
}
