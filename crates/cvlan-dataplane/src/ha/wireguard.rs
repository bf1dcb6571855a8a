//! WireGuard engines under HA: roles, export on the active, import on the standby, takeover.

use super::frame::WgCounter;
use super::lease;
use super::{Role, Stored};
use crate::wireguard::WireGuard;
use cvlan_proto::wireguard::SessionRecord;
use std::collections::HashMap;

/// Passive as a standby; as active, new keypairs start with the lease as their limit, and
/// keypairs that had no limit yet (an engine attached with live sessions) get one from where
/// they are: the standby can only store a counter at least that far.
pub(super) fn apply_role(wg: &WireGuard, role: Role, lease: u64) {
    wg.with(|d| {
        d.send_lease = Some(lease);
        if role == Role::Active {
            for (i, _, _) in d.session_counters() {
                if let Some(kp) = d.keypair_by_index(i).filter(|k| k.send_limit() == u64::MAX) {
                    kp.set_send_limit(lease::send_limit(kp.sent(), lease));
                }
            }
        }
    });
    wg.set_passive(role == Role::Standby);
}

/// Every live keypair's counters (active, each interval).
pub(super) fn counters(wg: &WireGuard) -> Vec<WgCounter> {
    wg.with(|d| d.session_counters())
        .into_iter()
        .map(|(index, send, recv_top)| WgCounter {
            index,
            send,
            recv_top,
        })
        .collect()
}

/// The full records of the given receiver indices (new since the last interval).
pub(super) fn records(wg: &WireGuard, wanted: &[u32]) -> Vec<SessionRecord> {
    let now = wg.time().mono;
    wg.with(|d| d.export_sessions(now))
        .into_iter()
        .filter(|r| wanted.binary_search(&r.local_index).is_ok())
        .collect()
}

/// Installs a record on the first engine that has its peer; `false` if none has.
pub(super) fn import(engines: &[std::sync::Arc<WireGuard>], r: &SessionRecord) -> bool {
    engines.iter().any(|wg| {
        let now = wg.time().mono;
        wg.with(|d| d.import_session(r, now)).is_some()
    })
}

pub(super) fn remove(engines: &[std::sync::Arc<WireGuard>], index: u32) {
    for wg in engines {
        wg.with(|d| d.remove_session(index));
    }
}

/// Moves a synced counter forward on whichever engine holds the index.
pub(super) fn sync_counter(engines: &[std::sync::Arc<WireGuard>], c: &WgCounter) -> bool {
    engines
        .iter()
        .any(|wg| wg.with(|d| d.sync_counter(c.index, c.send, c.recv_top)))
}

/// Raises the send limit of an acknowledged keypair (active). `false` for an unknown index.
pub(super) fn ack(
    engines: &[std::sync::Arc<WireGuard>],
    index: u32,
    acked: u64,
    lease: u64,
) -> bool {
    engines
        .iter()
        .any(|wg| match wg.with(|d| d.keypair_by_index(index)) {
            Some(kp) => {
                kp.raise_send_limit(lease::send_limit(acked, lease));
                true
            }
            None => false,
        })
}

/// Keypairs that reached their limit (the standby stopped acknowledging). One lock for all.
pub(super) fn exhausted(wg: &WireGuard) -> Vec<u32> {
    wg.with(|d| {
        d.session_counters()
            .into_iter()
            .filter(|&(i, _, _)| {
                d.keypair_by_index(i)
                    .is_some_and(|kp| kp.send_limit() != u64::MAX && kp.send_exhausted())
            })
            .map(|c| c.0)
            .collect()
    })
}

/// Takeover: synced keypairs continue past anything the old active may have used, and one the
/// peer has used is `current` even if it was still `next` when exported. Keypairs without a
/// stored counter may not send at all (the device handshakes again): the channel installs and
/// stores under one lock (held here too), so those are only keypairs left from before this
/// node was last demoted, which the active it follows never synced — it may have used them
/// beyond anything this node knows. Returns (continued, stopped).
pub(super) fn take_over(wg: &WireGuard, stored: &HashMap<u32, Stored>, lease: u64) -> (u64, u64) {
    let keypairs: Vec<_> = wg.with(|d| {
        d.session_counters()
            .into_iter()
            .filter_map(|(i, _, _)| d.keypair_by_index(i).map(|kp| (i, kp)))
            .collect()
    });
    let (mut jumped, mut stopped) = (0, 0);
    for (i, kp) in keypairs {
        match stored.get(&i) {
            Some(s) => {
                let start = lease::takeover_counter(s.send, lease);
                kp.advance_send_counter(start);
                // Its own lease: the other node, once it syncs this session, starts beyond it.
                kp.set_send_limit(lease::send_limit(start, lease));
                if let Some(top) = s.recv_top {
                    kp.mark_received_through(top);
                    // The peer used it: a keypair still `next` here is its current one.
                    wg.with(|d| d.confirm_session(i));
                }
                jumped += 1;
            }
            None => {
                kp.set_send_limit(0);
                stopped += 1;
            }
        }
    }
    (jumped, stopped)
}
