cvlan_fuzz::fuzz_main!(cvlan_fuzz::charon_protocol::run);
