cvlan_fuzz::fuzz_main!(cvlan_fuzz::offload::run);
