//! WireGuard datagrams: the message classifier and the device's receive entry point
//! (`Device::handle_handshake`, `Device::lookup_receiver`), sans-I/O with fixed keys.
//!
//! MAC1 is keyed by our public key, so random bytes never get past it; the target also feeds
//! each handshake message with MAC1 recomputed, which lets the fuzzer reach the handshake code
//! behind it. Our device has just sent an initiation (fixed keys, fixed randomness), so a
//! response or cookie reply for it (the seeds in `corpus/wireguard`) is processed for real.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use cvlan_proto::wireguard::constants::LABEL_MAC1;
use cvlan_proto::wireguard::messages::{self, init, resp, Message};
use cvlan_proto::wireguard::{crypto, Device, Outbox, PeerConfig, PeerId, Time};

use crate::rng::CountingRng;

/// Our static private key and the peer's.
pub const OUR_KEY: [u8; 32] = [0x11; 32];
pub const PEER_KEY: [u8; 32] = [0x22; 32];
pub const OUR_ADDR: &str = "192.0.2.1:51820";
pub const PEER_ADDR: &str = "192.0.2.2:51820";
pub const T0: Time = Time {
    mono: Duration::from_secs(100),
    unix: Duration::from_secs(1_700_000_000),
};

/// The public key of a static private key.
pub fn public_key(private: [u8; 32]) -> [u8; 32] {
    let d = Device::new(Some(private));
    d.public_key().expect("device has a key")
}

/// Our public key and the peer's, computed once (each is a scalar multiplication).
fn public_keys() -> &'static ([u8; 32], [u8; 32]) {
    static KEYS: OnceLock<([u8; 32], [u8; 32])> = OnceLock::new();
    KEYS.get_or_init(|| (public_key(OUR_KEY), public_key(PEER_KEY)))
}

/// A device with the key `private` and one peer `peer_private`'s public key, at `PEER_ADDR`
/// or `OUR_ADDR` as seen from `private`'s side. `initiate` makes it send an initiation
/// first; the datagrams it sent are returned.
pub fn device(
    private: [u8; 32],
    peer_private: [u8; 32],
    initiate: bool,
    rng: &mut CountingRng,
) -> (Device, PeerId, Vec<Vec<u8>>) {
    let mut d = Device::new(Some(private));
    let endpoint = if private == OUR_KEY {
        PEER_ADDR
    } else {
        OUR_ADDR
    };
    let (ours, peers) = public_keys();
    let peer_public = match peer_private {
        OUR_KEY => *ours,
        PEER_KEY => *peers,
        other => public_key(other),
    };
    let id = d.upsert_peer(PeerConfig {
        public_key: peer_public,
        preshared_key: None,
        endpoint: Some(endpoint.parse().expect("endpoint")),
        persistent_keepalive: 0,
    });
    let mut out = Outbox::default();
    if initiate {
        // A packet to send with no session starts a handshake.
        let _ = d.prepare_send(id, &[0x45; 20], T0, rng, &mut out);
    }
    let sent = out.datagrams.into_iter().map(|(m, _)| m).collect();
    (d, id, sent)
}

/// `msg` with MAC1 recomputed for the receiver whose public key is `receiver`; `None` if
/// `msg` is not a handshake message.
pub fn with_mac1(msg: &[u8], receiver: &[u8; 32]) -> Option<Vec<u8>> {
    let at = match messages::parse(msg).ok()? {
        Message::Initiation(_) => init::MAC1,
        Message::Response(_) => resp::MAC1,
        _ => return None,
    };
    let key = crypto::hash(&[LABEL_MAC1, receiver]);
    let mut m = msg.to_vec();
    let mac = crypto::mac(&key, &[&m[..at]]);
    m[at..at + 16].copy_from_slice(&mac);
    Some(m)
}

pub fn run(data: &[u8]) {
    if let Ok(Message::Transport { payload, .. }) = messages::parse(data) {
        assert_eq!(payload.len() + 16, data.len(), "transport payload bounds");
    }

    let mut rng = CountingRng::default();
    // A response or cookie reply is only processed for an initiation we sent: make one
    // (two scalar multiplications, so only when the input could use it).
    let answers = matches!(data.first(), Some(2 | 3));
    let (mut dev, _, _) = device(OUR_KEY, PEER_KEY, answers, &mut rng);
    let src: SocketAddr = PEER_ADDR.parse().expect("address");
    let t = Time {
        mono: T0.mono + Duration::from_millis(10),
        unix: T0.unix,
    };
    let mut out = Outbox::default();
    let _ = dev.handle_handshake(src, data, t, &mut rng, &mut out);
    if let Some(fixed) = with_mac1(data, &public_keys().0) {
        let _ = dev.handle_handshake(src, &fixed, t, &mut rng, &mut out);
    }
    if let Ok(Message::Transport { receiver, .. }) = messages::parse(data) {
        let _ = dev.lookup_receiver(receiver, t);
    }
    for (m, _) in &out.datagrams {
        assert!(
            messages::parse(m).is_ok(),
            "device sent a malformed datagram"
        );
    }
}
