//! Opens arbitrary bytes as a package and reads every entry and attribute.
//! Any panic, hang or runaway allocation is a bug.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pkg) = exos_hpkg::Package::from_file(common::memfile(data), "fuzz.hpkg", &Default::default()) else {
        return;
    };
    common::read_every_entry(&pkg, true);
});
