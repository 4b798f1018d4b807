//! Parses arbitrary bytes as a repository-info section (a flattened
//! BMessage), the part of an HPKR index read before any package.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = exos_hpkg::RepositoryInfo::parse(data) {
        // Decoded strings come from the message (invalid UTF-8 bytes widen
        // to 3-byte replacement characters at most).
        let total: usize = [
            &info.name,
            &info.identifier,
            &info.base_url,
            &info.vendor,
            &info.summary,
        ]
        .iter()
        .map(|s| s.len())
        .sum();
        assert!(total <= 3 * 5 * data.len());
    }
});
