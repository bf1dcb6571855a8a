//! SAs a restarted charon never claimed ("orphans", see `install.rs` `flush_sas`) keep forwarding
//! for a grace time; when the engine removes them it says so, because charon will not: the
//! tunnel stops carrying traffic at that moment unless it was negotiated again.

use std::time::Duration;

/// Reports SAs the engine removed because the charon that installed them is gone and the new
/// one did not replace them within `grace`: one event per tunnel, SPIs sorted.
pub(crate) fn report_removed(
    events: Option<&crate::EventSink>,
    mut removed: Vec<(u32, u32)>,
    grace: Duration,
) {
    let Some(events) = events else { return };
    removed.sort_unstable();
    for chunk in removed.chunk_by(|a, b| a.0 == b.0) {
        events(crate::Event::SasRemoved {
            if_id: chunk[0].0,
            spis: chunk.iter().map(|(_, spi)| *spi).collect(),
            reason: format!(
                "installed by a charon that is gone; not replaced within {}s",
                grace.as_secs()
            ),
        });
    }
}
