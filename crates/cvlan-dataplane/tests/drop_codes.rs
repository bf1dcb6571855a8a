//! Every drop code the data plane reports is in the one table (`counters::DropReason`), which the
//! binding lists as `dropCodes()` and `src/daemon/drops.ts` maps in full.

use cvlan_dataplane::counters::DropReason;
use cvlan_dataplane::ipsec::IpsecDrop;

#[test]
fn ipsec_engine_codes_are_in_the_table() {
    let table: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    for d in IpsecDrop::ALL {
        assert!(
            table.contains(&d.as_str()),
            "{} is counted by the IPsec engine but missing from counters.rs",
            d.as_str()
        );
    }
}
