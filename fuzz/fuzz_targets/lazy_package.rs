//! Lazy packages: arbitrary bytes as a block map and as a lazy record (the
//! two files `exos install --lazy` keeps), and as a package read through
//! `RemoteSource` — verified blocks fetched from a "repository" (the input
//! in an in-memory file), kept in a small bounded block cache, with
//! read-ahead — reading every entry. No panic, hang or runaway allocation.
#![no_main]

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn cache() -> Arc<exos_lazy::BlockCache> {
    static CACHE: OnceLock<(tempfile::TempDir, Arc<exos_lazy::BlockCache>)> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            // Small: eviction runs all the time.
            let cache = exos_lazy::BlockCache::open(&dir.path().join("blocks"), 256 << 10)
                .expect("block cache");
            (dir, Arc::new(cache))
        })
        .1
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let claimed = data
        .get(16..24)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
    let _ = exos_repo::BlockMap::parse(data, "fuzz.blocks", claimed);
    let _ = exos_lazy::LazyRecord::parse(data, "fuzz.lazy");

    let file = common::memfile(data);
    let fd = file.as_raw_fd();
    let Ok(blocks) = exos_repo::BlockMap::of_file(Path::new(&format!("/proc/self/fd/{fd}")), 4096)
    else {
        return;
    };
    let lazy = exos_lazy::LazyPackage {
        record: exos_lazy::LazyRecord {
            repository: "fuzz".into(),
            base: "/proc/self/fd".into(),
            file: fd.to_string(),
            size: data.len() as u64,
            sha256: exos_root::Sha256::of_bytes(data),
            manifest: serde_json::json!({}),
            metadata_offset: Some(data.len() as u64 / 2),
        },
        blocks,
        path: "fuzz.lazy".into(),
    };
    let Ok(source) = exos_lazy::RemoteSource::new(lazy, cache(), exos_repo::Timeouts::default())
    else {
        return;
    };
    let _ = source.prefetch_metadata();
    source.follow_readers();
    let Ok(pkg) = exos_hpkg::Package::from_source(
        source.clone(),
        "fuzz.hpkg",
        &exos_hpkg::OpenOptions::default(),
    ) else {
        return;
    };
    let mut buf = vec![0u8; 70_000];
    for (_, e) in pkg.toc().walk() {
        pkg.will_read(e);
        let mut off = 0;
        while off < e.size() {
            match pkg.read_at(e, off, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => off += n as u64,
            }
        }
    }
    let _ = source.stats();
    drop(file);
});
