//! Writer tests: fixtures survive read → write → read with every
//! compression, output is deterministic, directory builds read back
//! identically, and the independent `hpkg` crate reads what we write.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use exos_hpkg::{repack, BuildOptions, Compression, Package, PackageInfo, Version};
use proptest::prelude::*;

fn all_compressions() -> [BuildOptions; 4] {
    [
        BuildOptions::with_compression(Compression::None),
        BuildOptions::with_compression(Compression::Zlib),
        BuildOptions {
            level: 1,
            ..BuildOptions::with_compression(Compression::Zlib)
        },
        BuildOptions {
            level: 3,
            ..BuildOptions::with_compression(Compression::Zstd)
        },
    ]
}

#[test]
fn fixtures_round_trip_with_every_compression() {
    let tmp = tempfile::tempdir().unwrap();
    for path in fixtures("hpkg") {
        let src = Package::open(&path).unwrap();
        let before = snapshot(&src);
        for opts in all_compressions() {
            let out = tmp.path().join("rt.hpkg");
            repack(&src, &out, opts).unwrap();
            let back = Package::open(&out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(back.info(), src.info(), "{}", path.display());
            assert_eq!(back.header().heap.compression, opts.compression);
            let after = snapshot(&back);
            assert_eq!(before.len(), after.len());
            for (a, b) in before.iter().zip(&after) {
                assert_eq!(a, b, "{} {:?}", path.display(), opts.compression);
            }
        }
    }
}

#[test]
fn zlib_round_trip_of_a_haiku_package_is_byte_identical_in_structure() {
    // Same TOC and attribute encoding as Haiku's writer: the TOC and
    // package-attributes sections we write for a repacked Haiku package
    // are identical to the originals (only heap layout may differ).
    let path = fixtures_dir().join("generated_mini-uncompressed.hpkg");
    let src = Package::open(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mini.hpkg");
    repack(
        &src,
        &out,
        BuildOptions::with_compression(Compression::None),
    )
    .unwrap();
    let orig = fs::read(&path).unwrap();
    let ours = fs::read(&out).unwrap();
    // Headers equal except reserved1 (garbage in Haiku's file, 0 in ours).
    assert_eq!(orig[..52], ours[..52]);
    assert_eq!(&ours[52..56], &[0, 0, 0, 0]);
    assert_eq!(orig[56..80], ours[56..80]);
    // Data and TOC byte-identical. The attribute section's string table may
    // order equally used strings differently: Haiku breaks such ties by
    // hash-table order (spec §1.4), we by first use.
    let attrs_start = 80 + src.header().attributes_offset() as usize;
    assert_eq!(orig[56..attrs_start], ours[56..attrs_start]);
    assert_eq!(Package::open(&out).unwrap().info(), src.info());
}

#[test]
fn output_is_deterministic_and_independent_of_threads() {
    let path = fixtures_dir().join("hpkg-crate_ctags_source-5.8-5-source.hpkg");
    let src = Package::open(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for threads in [1, 2, 4, 1] {
        let out = tmp
            .path()
            .join(format!("d{threads}-{}.hpkg", outputs.len()));
        repack(
            &src,
            &out,
            BuildOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        outputs.push(fs::read(&out).unwrap());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

fn sample_info() -> PackageInfo {
    PackageInfo {
        name: "sample".into(),
        summary: "s".into(),
        description: "d".into(),
        vendor: "v".into(),
        packager: "p".into(),
        version: Version::parse("1.0-1").unwrap(),
        ..Default::default()
    }
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("lib/deep/er/still")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("eight"), b"12345678").unwrap();
    fs::write(root.join("nine"), b"123456789").unwrap();
    // Compressible, incompressible, and > 8 MiB (the streamed path).
    let text: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    fs::write(root.join("lib/text"), &text).unwrap();
    let mut x = 0x12345678u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(root.join("lib/noise"), &noise).unwrap();
    let big: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("lib/deep/big"), &big).unwrap();
    fs::write(root.join("lib/deep/big-copy"), &big).unwrap();
    fs::write(root.join("lib/text-copy"), &text).unwrap();
    fs::set_permissions(root.join("lib/deep/er"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("../bin/tool", root.join("lib/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling")).unwrap();
    // A Haiku attribute through the user.haiku.* convention.
    let mut v = u32::from_be_bytes(*b"MIMS").to_le_bytes().to_vec();
    v.extend_from_slice(b"text/plain\0");
    rustix::fs::setxattr(
        root.join("nine"),
        "user.haiku.BEOS:TYPE",
        &v,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("tests need user xattrs on the temp file system");
}

/// Compares a package with the directory it was built from.
fn assert_matches_tree(pkg: &Package, root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = 0;
    for (_, e) in pkg.toc().walk() {
        if e.path() == ".PackageInfo" {
            continue;
        }
        let p = root.join(e.path());
        let md = fs::symlink_metadata(&p).unwrap();
        assert_eq!(e.mode(), md.mode(), "{}", e.path());
        assert_eq!(e.mtime().secs as i64, md.mtime(), "{}", e.path());
        assert_eq!(e.mtime().nanos as i64, md.mtime_nsec(), "{}", e.path());
        match e.kind() {
            exos_hpkg::EntryKind::File => {
                assert_eq!(read_all(pkg, e), fs::read(&p).unwrap(), "{}", e.path())
            }
            exos_hpkg::EntryKind::Symlink => {
                assert_eq!(e.symlink_target_path().unwrap(), fs::read_link(&p).unwrap())
            }
            exos_hpkg::EntryKind::Directory => {
                assert_eq!(e.children().count(), fs::read_dir(&p).unwrap().count())
            }
        }
        seen += 1;
    }
    assert_eq!(seen, count_tree(root));
}

fn count_tree(p: &Path) -> usize {
    fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            1 + if e.file_type().unwrap().is_dir() {
                count_tree(&e.path())
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn directory_build_reads_back_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    for opts in all_compressions() {
        let out = tmp.path().join("tree.hpkg");
        let stats =
            exos_hpkg::build_from_dir(&root, &out, &sample_info(), opts, &mut |_| {}, &mut |_| {})
                .unwrap();
        assert_eq!(
            stats.deduplicated_bytes,
            (9 << 20) + fs::metadata(root.join("lib/text")).unwrap().len()
        );
        let pkg = Package::open(&out).unwrap();
        assert_matches_tree(&pkg, &root);
        // Duplicates share one heap range.
        let a = pkg.toc().lookup_path("lib/deep/big").unwrap().data();
        let b = pkg.toc().lookup_path("lib/deep/big-copy").unwrap().data();
        assert_eq!(a, b);
        let nine = pkg.toc().lookup_path("nine").unwrap();
        let attrs: Vec<_> = nine.attributes().collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].name, "BEOS:TYPE");
        assert_eq!(attrs[0].type_code, u32::from_be_bytes(*b"MIMS"));
        assert_eq!(pkg.read_attribute(&attrs[0]).unwrap(), b"text/plain\0");
        // Sizes straddle the 8-byte inline limit.
        assert!(pkg
            .toc()
            .lookup_path("eight")
            .unwrap()
            .inline_data()
            .is_some());
        assert!(pkg
            .toc()
            .lookup_path("nine")
            .unwrap()
            .inline_data()
            .is_none());
        assert!(pkg.toc().lookup_path(".PackageInfo").is_some());
    }
}

#[test]
fn hpkg_crate_reads_what_we_write() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    for opts in all_compressions() {
        let out = tmp.path().join("x.hpkg");
        exos_hpkg::build_from_dir(&root, &out, &sample_info(), opts, &mut |_| {}, &mut |_| {})
            .unwrap();
        let theirs = hpkg::package::Package::load(&out).unwrap();
        let ours = Package::open(&out).unwrap();
        assert_eq!(theirs.name.as_deref(), Some("sample"));
        assert_eq!(theirs.files.len(), ours.toc().len() - 1);
        for f in &theirs.files {
            let e = ours
                .toc()
                .lookup_path(&f.path)
                .unwrap_or_else(|| panic!("{}", f.path));
            // hpkg 1.0.0 applies the file default (0644) to directories and
            // symlinks without stored permissions; Haiku's are 0755 and 0777.
            if e.kind() == exos_hpkg::EntryKind::File || e.has_explicit_permissions() {
                assert_eq!(f.permissions & 0o7777, e.permissions() as u32, "{}", f.path);
            }
            assert_eq!(
                f.symlink_path.as_deref(),
                e.symlink_target().as_deref(),
                "{}",
                f.path
            );
            if f.data_offset.is_some() {
                assert_eq!(
                    theirs.read_file(&f.path).unwrap(),
                    read_all(&ours, e),
                    "{}",
                    f.path
                );
            }
        }
    }
}

#[test]
fn unpackable_entries_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    fs::create_dir_all(&root).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let out = tmp.path().join("x.hpkg");
    let err = exos_hpkg::build_from_dir(
        &root,
        &out,
        &sample_info(),
        BuildOptions::default(),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("fifo") && err.contains("cannot be packaged"),
        "{err}"
    );
    assert!(!out.exists());
    // No temporary file is left behind either.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random trees survive build → read with random compression settings.
    #[test]
    fn random_trees_round_trip(
        files in proptest::collection::btree_map("[a-z]{1,6}(/[a-z]{1,6}){0,2}", proptest::collection::vec(any::<u8>(), 0..70_000), 1..12),
        comp in 0usize..4,
        threads in 1usize..4,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t");
        fs::create_dir_all(&root).unwrap();
        for (path, data) in &files {
            let p = root.join(path);
            // Skip paths that collide with a file created as a directory or vice versa.
            if fs::create_dir_all(p.parent().unwrap()).is_err() || p.is_dir() {
                continue;
            }
            fs::write(&p, data).unwrap();
        }
        let mut opts = all_compressions()[comp];
        opts.threads = threads;
        let out = tmp.path().join("t.hpkg");
        exos_hpkg::build_from_dir(&root, &out, &sample_info(), opts, &mut |_| {}, &mut |_| {}).unwrap();
        let pkg = Package::open(&out).unwrap();
        assert_matches_tree(&pkg, &root);
    }
}
