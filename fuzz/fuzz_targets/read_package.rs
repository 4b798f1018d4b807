//! Opens arbitrary bytes as a package and reads every entry and attribute.
//! Any panic, hang or runaway allocation is a bug.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pkg) = exos_hpkg::Package::from_file(common::memfile(data), "fuzz.hpkg") else {
        return;
    };
    let mut buf = vec![0u8; 70_000];
    for (_, e) in pkg.toc().walk() {
        let mut off = 0;
        while off < e.size() {
            match pkg.read_at(e, off, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => off += n as u64,
            }
        }
        for a in e.attributes() {
            let _ = pkg.read_attribute(&a);
        }
    }
});
