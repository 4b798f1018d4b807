//! Imports arbitrary bytes as a Debian package (`exos import-deb`): the ar
//! archive, the compressed control and data tarballs, the control
//! paragraph, relations, versions and maintainer script. No panic, and
//! nothing written outside the output directory, whatever the bytes. Also
//! parses the bytes as a control paragraph, relation field and version
//! directly (the version mapping must keep dpkg's order against itself).
#![no_main]

use exos_deb::{control, version::DebVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = control::Paragraph::parse(text, "fuzz");
        let _ = control::relations("Depends", text);
        let _ = control::alternatives(text);
        if let Some((a, b)) = text.split_once('\n') {
            if let (Ok(a), Ok(b)) = (DebVersion::parse(a), DebVersion::parse(b)) {
                let haiku = a.to_haiku().compare(&b.to_haiku());
                assert_eq!(haiku, a.compare(&b), "{a} vs {b}");
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = dir.path().join("in.deb");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    std::fs::write(&deb, data).expect("write");
    // Small limits: a fuzzed bomb costs milliseconds, and they are checked
    // like the defaults.
    let limits = exos_deb::Limits {
        max_file: 8 << 20,
        max_package: 16 << 20,
    };
    let _ = exos_deb::import_limited(&deb, &out, &exos_deb::default_build_options(), limits);
    for e in std::fs::read_dir(dir.path()).expect("read_dir") {
        let name = e.expect("entry").file_name();
        assert!(name == "in.deb" || name == "out", "wrote {name:?} outside");
    }
});
