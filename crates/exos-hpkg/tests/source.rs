//! `Source::will_need` on a local file starts reading exactly the range it
//! is given into the page cache (what packagefs asks for a program's stored
//! bytes when its ELF header is read, so page faults find them cached).

use std::fs::File;
use std::io::Write;
use std::num::NonZeroU64;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use exos_hpkg::source::Source;

const MIB: u64 = 1 << 20;

/// Bytes of `path` in the page cache (util-linux's `fincore`).
fn resident(path: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "fincore: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("fincore prints a byte count")
}

#[test]
fn will_need_reads_the_range_into_the_page_cache() {
    // On disk (target/), not tmpfs: tmpfs pages cannot be dropped.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("package");
    let mut file = File::create(&path).unwrap();
    let block: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..8 {
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    let file = File::open(&path).unwrap();
    rustix::fs::fadvise(
        &file,
        0,
        NonZeroU64::new(8 * MIB),
        rustix::fs::Advice::DontNeed,
    )
    .unwrap();
    assert_eq!(resident(&path), 0, "the clean file's pages were dropped");

    file.will_need(MIB, 4 * MIB);
    let deadline = Instant::now() + Duration::from_secs(10);
    while resident(&path) < 4 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let cached = resident(&path);
    assert!(cached >= 4 * MIB, "only {cached} bytes were read ahead");
    assert!(
        cached < 8 * MIB,
        "the whole file was read ({cached} bytes), not the range asked for"
    );

    // An empty range asks for nothing (and does not fail).
    file.will_need(0, 0);
}
