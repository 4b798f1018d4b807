//! Opens arbitrary bytes as an HPKR repository index.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = exos_hpkg::Repository::from_file(common::memfile(data), "fuzz.hpkr");
});
