//! Sans-I/O protocol core of cvlan-vrouter.
//!
//! This crate has no networking code, no threads and reads no clock: time is always an
//! argument (`now`), randomness is injected by the caller. That keeps the handshake, timers,
//! replay windows and routing testable with a virtual clock and in-memory peer pairs.

pub mod esp;
pub mod icmp;
pub mod ike;
pub mod ip;
pub mod ratelimiter;
pub mod replay;
pub mod secret;
pub mod wireguard;
