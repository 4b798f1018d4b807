#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use exos_hpkg::{Entry, EntryKind, Package};

/// `../shared/fixtures` beside the repository (or `$EXOS_FIXTURES`).
/// Missing fixtures fail the test loudly rather than skipping it.
pub(crate) fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("EXOS_FIXTURES") {
        return PathBuf::from(p);
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(
        d.is_dir(),
        "fixtures not found at {} (set EXOS_FIXTURES)",
        d.display()
    );
    d.canonicalize().unwrap()
}

pub(crate) fn fixtures(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} fixtures");
    v
}

/// Everything observable about an entry, for comparisons.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EntrySnapshot {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: (u64, u32),
    pub symlink: Option<String>,
    pub data: Vec<u8>,
    pub attributes: Vec<(String, u32, Vec<u8>)>,
}

pub(crate) fn read_all(pkg: &Package, e: Entry<'_>) -> Vec<u8> {
    let mut v = vec![0u8; e.size() as usize];
    let mut off = 0;
    while off < v.len() {
        let n = pkg.read_at(e, off as u64, &mut v[off..]).unwrap();
        assert!(n > 0, "short read");
        off += n;
    }
    v
}

pub(crate) fn snapshot(pkg: &Package) -> Vec<EntrySnapshot> {
    pkg.toc()
        .walk()
        .map(|(_, e)| EntrySnapshot {
            path: e.path(),
            kind: e.kind(),
            mode: e.mode(),
            mtime: (e.mtime().secs, e.mtime().nanos),
            symlink: e.symlink_target().map(|t| t.into_owned()),
            data: read_all(pkg, e),
            attributes: e
                .attributes()
                .map(|a| {
                    (
                        a.name.to_string(),
                        a.type_code,
                        pkg.read_attribute(&a).unwrap(),
                    )
                })
                .collect(),
        })
        .collect()
}
