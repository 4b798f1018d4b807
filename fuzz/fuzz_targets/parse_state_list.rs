//! Parses arbitrary bytes as the files EXOS reads back from disk besides
//! packages: a state list (system/state/active.list), a numbered state
//! with its `# change`/`# created` lines, and a mount's status.json.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<exos_packagefs::Status>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz.list");
        if let Ok(entries) = exos_packagefs::activate::parse_state_list(text, path) {
            // Whatever parses names a plain .hpkg file in a known layer.
            for e in entries {
                assert!(e.file.ends_with(".hpkg") && !e.file.contains('/'));
                assert!(e.layer < 3 && e.sha256.len() == 64);
            }
        }
        if let Ok(state) = exos_manager::State::parse(text, path) {
            // What was read renders back and reads back the same.
            let again = exos_manager::State::parse(&state.render(), path).unwrap();
            assert_eq!(again.entries.len(), state.entries.len());
        }
    }
});
