//! Parses arbitrary bytes as manifest.json and as a version range; whatever
//! parses round-trips through its canonical JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = exos_manifest::Manifest::parse(data, "fuzz") {
        // The canonical form parses back to the same manifest.
        let again = exos_manifest::Manifest::parse(m.to_json().to_string().as_bytes(), "fuzz");
        assert_eq!(again.ok(), Some(m));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = exos_manifest::VersionRange::parse(text) {
            assert_eq!(
                exos_manifest::VersionRange::parse(&r.to_string()).ok(),
                Some(r)
            );
        }
    }
});
