cvlan_fuzz::fuzz_main!(cvlan_fuzz::esp::run);
