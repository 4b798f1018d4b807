//! Parses arbitrary bytes as the files EXOS reads back from disk besides
//! packages: a state list (`active.list` and numbered states alike, one
//! parser), a mount's status.json, a package's remembered content
//! digests (`system/state/digests/<sha>.digests`), the runtime
//! overlays (`system/state/overlays.json`), the package records
//! (`system/state/packages.json`: origins), the boot record
//! (`system/state/boot.json`), the installed-package index
//! (`system/state/installed.index`) and a sandbox's launch (what
//! `exos run --sandbox` hands its init through a pipe).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<exos_packagefs::Status>(data);
    let overlays_path = std::path::Path::new("fuzz-overlays.json");
    if let Ok(o) = exos_root::overlays::RuntimeOverlays::parse(data, overlays_path) {
        // What parses renders to a file that parses to the same overlays.
        let again = exos_root::overlays::RuntimeOverlays::parse(&o.render(), overlays_path);
        assert_eq!(again.ok(), Some(o));
    }
    let _ = exos_view::sandbox::Launch::parse(data, "fuzz launch");
    let db_path = std::path::Path::new("fuzz-packages.json");
    if let Ok(db) = exos_root::pkgdb::PackageDb::parse(data, db_path) {
        let again = exos_root::pkgdb::PackageDb::parse(&db.render(), db_path);
        assert_eq!(again.ok(), Some(db));
    }
    let boot_path = std::path::Path::new("fuzz-boot.json");
    if let Ok(b) = exos_root::boot::BootRecord::parse(data, boot_path) {
        let again = exos_root::boot::BootRecord::parse(&b.render(), boot_path);
        assert_eq!(again.ok().as_ref(), Some(&b));
        // Choosing never panics and names a state it was given (or the one asked).
        let states: Vec<u64> = b.states.keys().copied().collect();
        for (&wanted, _) in b.states.iter().take(4) {
            let c = b.choose(wanted, &states, 3);
            assert!(c.state == wanted || states.contains(&c.state));
        }
    }
    if let Ok(index) = exos_manager::index::InstalledIndex::parse(data, "fuzz.index") {
        // What parses renders to an index that parses and renders the same.
        let rendered = index.render();
        let again = exos_manager::index::InstalledIndex::parse(rendered.as_bytes(), "fuzz.index")
            .expect("a rendered index parses");
        assert_eq!(again.len(), index.len());
        assert_eq!(again.render(), rendered);
    }
    let digests_path = std::path::Path::new("fuzz.digests");
    if let Ok(d) = exos_root::digests::ContentDigests::parse(data, digests_path) {
        assert_eq!(d.render(), data, "digests render back to their bytes");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz.list");
        if let Ok(state) = exos_root::StateList::parse(text, path) {
            // Whatever parses names plain .hpkg files, and renders back to
            // text that parses to the same list.
            for e in &state.entries {
                assert!(e.file.as_str().ends_with(".hpkg") && !e.file.as_str().contains('/'));
            }
            let again = exos_root::StateList::parse(&state.render(), path).unwrap();
            assert!(again.same_packages(&state));
            assert_eq!(
                (again.change.as_str(), again.created),
                (state.change.as_str(), state.created)
            );
        }
    }
});
