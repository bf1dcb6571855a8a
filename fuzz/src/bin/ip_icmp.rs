cvlan_fuzz::fuzz_main!(cvlan_fuzz::ip_icmp::run);
