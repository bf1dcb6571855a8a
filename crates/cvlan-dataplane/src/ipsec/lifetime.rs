//! SA lifetimes (RFC 4301 §4.4.2.1): byte and packet limits are checked on the packet path
//! (`cvlan_proto::esp`), time limits by a worker's tick. charon hears of each crossing through an
//! expire message over the plugin link: soft, it rekeys; hard, it deletes the SA.

use super::{IpsecEngine, ORPHAN_GRACE, PROTO_ESP};
use crate::charon::protocol::Expire;
use cvlan_proto::esp::LifetimeEvent;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

impl IpsecEngine {
    /// Checks time-based lifetimes and the orphans' grace (called from a worker tick; cheap
    /// when nothing expires).
    pub fn poll_lifetimes(&self, now: Duration) {
        if self
            .table
            .load()
            .orphaned_at
            .is_some_and(|at| now.saturating_sub(at) >= ORPHAN_GRACE)
        {
            self.drop_orphans();
        }
        self.poll_leases(now);
        let t = self.table.load();
        for e in t.inbound.values() {
            if let Some(ev) = e.sa.poll_lifetime(now) {
                self.report(e.sa.spi(), e.id.dst, ev);
            }
        }
        for e in t.outbound.values() {
            if let Some(ev) = e.sa.poll_lifetime(now) {
                self.report(e.sa.spi(), e.id.dst, ev);
            }
        }
    }

    /// Tells charon an SA crossed a limit.
    pub(super) fn report(&self, spi: u32, dst: SocketAddr, ev: LifetimeEvent) {
        if let Some(c) = self.charon.get() {
            let hard = ev == LifetimeEvent::HardExpire;
            if c.expire(Expire {
                proto: PROTO_ESP,
                spi,
                dst,
                hard,
            })
            .is_ok()
            {
                self.counters.expires_sent.fetch_add(1, Relaxed);
            }
        }
    }
}
