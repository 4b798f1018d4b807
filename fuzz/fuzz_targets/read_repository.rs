//! Opens arbitrary bytes as an HPKR repository index and decodes every
//! package entry.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(repo) = exos_hpkg::Repository::from_file(common::memfile(data), "fuzz.hpkr") {
        // Validated at open: decoding again yields exactly that many.
        assert_eq!(repo.packages().count(), repo.len());
    }
});
