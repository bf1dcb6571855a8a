//! The plugin link's view of the engine (`crate::charon::server::SaBackend`): charon's
//! `kernel_ipsec_t` and `socket_t` calls, as they arrive from its thread.

use super::{IpsecEngine, PROTO_ESP};
use crate::charon::protocol::{AddSa, IkePacket, Policy, SaId, SaStats, Status, UpdateSa};
use crate::charon::server::SaBackend;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct IpsecBackend(pub Arc<IpsecEngine>);

impl SaBackend for IpsecBackend {
    fn get_spi(&mut self, _src: SocketAddr, _dst: SocketAddr, proto: u8) -> Result<u32, Status> {
        if proto != PROTO_ESP {
            return Err(Status::NotSupported);
        }
        Ok(self.0.get_spi())
    }
    fn add_sa(&mut self, sa: AddSa) -> Result<(), Status> {
        self.0.add_sa(sa)
    }
    fn update_sa(&mut self, update: &UpdateSa) -> Result<(), Status> {
        self.0.update_sa(update)
    }
    fn query_sa(&mut self, id: &SaId) -> Result<SaStats, Status> {
        self.0.query_sa(id)
    }
    fn del_sa(&mut self, id: &SaId) -> Result<(), Status> {
        self.0.del_sa(id)
    }
    /// A new charon (or a resync) starts from nothing; what the old one installed forwards on
    /// as orphans for a while (`super::install`).
    fn flush_sas(&mut self) -> Result<(), Status> {
        self.0.flush_sas()
    }
    fn add_policy(&mut self, policy: Policy) -> Result<(), Status> {
        self.0.add_policy(policy)
    }
    fn del_policy(&mut self, policy: &Policy) -> Result<(), Status> {
        self.0.del_policy(policy)
    }
    fn flush_policies(&mut self) -> Result<(), Status> {
        self.0.flush_policies()
    }
    fn send_ike(&mut self, packet: IkePacket) {
        self.0.send_ike(packet);
    }
}
