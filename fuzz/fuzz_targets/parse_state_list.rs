//! Parses arbitrary bytes as a state list (system/state/active.list).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz.list");
        if let Ok(entries) = exos_packagefs::activate::parse_state_list(text, path) {
            // Whatever parses names a plain .hpkg file in a known layer.
            for e in entries {
                assert!(e.file.ends_with(".hpkg") && !e.file.contains('/'));
                assert!(e.layer < 3 && e.sha256.len() == 64);
            }
        }
    }
});
