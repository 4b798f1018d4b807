//! `Package::content_digests` against BLAKE3 of the source files: empty,
//! inline (≤ 8 bytes), multi-chunk, and deduplicated (shared heap range)
//! files, in a zlib package.

use std::fs;

use exos_hpkg::{build_from_dir, BuildOptions, Compression, Package, PackageInfo};

#[test]
fn digests_match_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("tiny", b"12345".to_vec()),
        ("d/big", big.clone()),
        ("d/big-copy", big),
        ("text", b"some text\n".repeat(5000)),
    ];
    for (name, bytes) in &files {
        fs::write(src.join(name), bytes).unwrap();
    }
    let out = tmp.path().join("p.hpkg");
    let info = PackageInfo {
        name: "p".into(),
        ..Default::default()
    };
    build_from_dir(
        &src,
        &out,
        &info,
        BuildOptions::with_compression(Compression::Zlib),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    let pkg = Package::open(&out).unwrap();
    let digests = pkg.content_digests().unwrap();
    // (The builder adds .PackageInfo.)
    assert_eq!(digests.len(), files.len() + 1);
    assert!(digests.windows(2).all(|w| w[0].0 < w[1].0), "ascending ids");
    for (name, bytes) in &files {
        let entry = pkg.toc().lookup_path(name).unwrap();
        let (_, d) = digests.iter().find(|(id, _)| *id == entry.id()).unwrap();
        assert_eq!(&d[..], &blake3::hash(bytes).as_bytes()[..16], "{name}");
    }
}
