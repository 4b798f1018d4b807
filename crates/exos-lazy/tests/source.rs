//! Lazy packages on their own: records as a root keeps them (and as an
//! attacker may write them), and a package read through verified blocks
//! from a repository directory, into a block cache, then offline.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exos_hpkg::Source;
use exos_lazy::{BlockCache, LazyError, LazyPackage, LazyRecord, RemoteSource};
use exos_repo::blocks::MIN_BLOCK_SIZE;
use exos_repo::{BlockMap, Timeouts};
use exos_root::{Layout, Sha256};

/// Bytes that are not the same in any two blocks.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A "repository" directory holding one file, and its lazy package.
fn served(dir: &Path, data: &[u8]) -> LazyPackage {
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let file = repo.join("big-1.hpkg");
    fs::write(&file, data).unwrap();
    LazyPackage {
        record: LazyRecord {
            repository: "main".into(),
            base: repo.display().to_string(),
            file: "big-1.hpkg".into(),
            size: data.len() as u64,
            sha256: Sha256::of_bytes(data),
            metadata_offset: None,
            manifest: serde_json::json!({"name": "big", "version": "1"}),
        },
        blocks: BlockMap::of_file(&file, MIN_BLOCK_SIZE).unwrap(),
        path: PathBuf::from("big.lazy"),
    }
}

fn cache(dir: &Path) -> Arc<BlockCache> {
    Arc::new(BlockCache::open(&dir.join("cache"), 64 << 20).unwrap())
}

#[test]
fn reads_come_from_verified_blocks_and_then_from_the_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(300_000);
    let package = served(tmp.path(), &data);
    let cache = cache(tmp.path());
    let source = RemoteSource::new(package.clone(), cache.clone(), Timeouts::default()).unwrap();
    assert_eq!(source.len().unwrap(), data.len() as u64);
    let mut buf = vec![0u8; 10_000];
    source.read_exact_at(&mut buf, 123_456).unwrap();
    assert_eq!(buf, data[123_456..133_456]);
    source.fetch_all(&|_| {}).unwrap();
    let stats = source.stats();
    assert!(stats.bytes_fetched >= data.len() as u64, "{stats:?}");
    assert!(cache.used() >= data.len() as u64);
    // The repository goes away: a new source reads everything from the
    // cache alone.
    fs::remove_dir_all(tmp.path().join("repo")).unwrap();
    let offline = RemoteSource::new(package, cache, Timeouts::default()).unwrap();
    let mut all = vec![0u8; data.len()];
    offline.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(all, data);
    assert_eq!(offline.stats().requests, 0);
}

#[test]
fn a_block_that_does_not_hash_to_the_map_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(100_000);
    let package = served(tmp.path(), &data);
    // The server's copy changes after the (signed) map was made.
    let mut changed = data.clone();
    changed[50_000] ^= 1;
    fs::write(tmp.path().join("repo/big-1.hpkg"), &changed).unwrap();
    let source = RemoteSource::new(package, cache(tmp.path()), Timeouts::default()).unwrap();
    let mut buf = vec![0u8; 100];
    let err = source.read_exact_at(&mut buf, 49_990).unwrap_err();
    assert!(err.to_string().contains("block"), "{err}");
    assert!(source.stats().last_error.is_some());
    // Blocks that do verify are still served.
    source.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data[..100]);
}

#[test]
fn a_damaged_cached_block_is_dropped_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache(tmp.path());
    let block = noise(4096);
    let hash: [u8; 32] = sha2_of(&block);
    cache.put(&hash, &block).unwrap();
    assert_eq!(cache.get(&hash).as_deref(), Some(&block[..]));
    // Someone with access to the cache changes the file.
    let name = exos_root::hex::encode(&hash);
    let path = tmp.path().join("cache").join(&name[..2]).join(&name);
    fs::write(&path, b"not the block").unwrap();
    assert_eq!(cache.get(&hash), None);
    assert!(!path.exists());
    assert!(!cache.contains(&hash));
}

fn sha2_of(data: &[u8]) -> [u8; 32] {
    Sha256::of_bytes(data).0
}

#[test]
fn the_cache_stays_within_its_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = BlockCache::open(&tmp.path().join("cache"), 40_000).unwrap();
    for i in 0..20u8 {
        let block = vec![i; 4096];
        cache.put(&sha2_of(&block), &block).unwrap();
        assert!(cache.used() <= 40_000, "{} bytes after {i}", cache.used());
    }
    // The most recent blocks stay.
    let last = vec![19u8; 4096];
    assert!(cache.get(&sha2_of(&last)).is_some());
}

#[test]
fn records_round_trip_and_hostile_ones_are_refused_by_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(50_000);
    let package = served(tmp.path(), &data);
    let root = tmp.path().join("root");
    let layout = Layout::new(&root);
    package.write(&layout).unwrap();
    let read = LazyPackage::read(&layout, &package.record.sha256)
        .unwrap()
        .unwrap();
    assert_eq!(read.record, package.record);
    assert_eq!(read.blocks.render(), package.blocks.render());
    assert!(LazyPackage::read(&layout, &Sha256::of_bytes(b"other"))
        .unwrap()
        .is_none());

    let text = serde_json::to_string(&package.record).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            text.replace("big-1.hpkg", "../etc/passwd"),
            "not a plain file name",
        ),
        (
            text.replace("big-1.hpkg", ".hidden"),
            "not a plain file name",
        ),
        (
            text.replace(&package.record.base, "gopher://x"),
            "unsupported URL",
        ),
        (format!("{}{}", text, " ".repeat(20_000)), "over the"),
    ];
    for (bad, rule) in cases {
        let err = LazyRecord::parse(bad.as_bytes(), "x.lazy").unwrap_err();
        assert!(
            matches!(&err, LazyError::Invalid { file, rule: r } if file == "x.lazy" && r.contains(rule)),
            "{err:?}"
        );
    }
    let err = LazyRecord::parse(b"{\"repository\": 1}", "x.lazy").unwrap_err();
    assert!(matches!(err, LazyError::Json { .. }), "{err:?}");

    // A record that describes another package than its name says.
    let other = layout.lazy_record(&Sha256::of_bytes(b"other"));
    fs::copy(layout.lazy_record(&package.record.sha256), &other).unwrap();
    let err = LazyPackage::read(&layout, &Sha256::of_bytes(b"other")).unwrap_err();
    assert!(
        matches!(&err, LazyError::Invalid { rule, .. } if rule.contains("not the package its name says")),
        "{err:?}"
    );
}
