//! Corrupted, truncated and hostile input: always a clear error, never a
//! panic, hang or unbounded allocation.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use exos_hpkg::attr::{encode_section, id, WAttr, WValue};
use exos_hpkg::header::{HeapInfo, PackageHeader, CHUNK_SIZE};
use exos_hpkg::{Compression, ErrorKind, Package, PackageInfo, Repository};
use proptest::prelude::*;

/// Opens and fully reads a package; returns the error text if any step fails.
fn open_and_read(path: &Path) -> Result<(), String> {
    let pkg = Package::open(path).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 100_000];
    for (_, e) in pkg.toc().walk() {
        let mut off = 0;
        while off < e.size() {
            let n = pkg.read_at(e, off, &mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("short read".into());
            }
            off += n as u64;
        }
        for a in e.attributes() {
            pkg.read_attribute(&a).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

fn error_of(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_tmp(tmp.path(), "bad.hpkg", bytes);
    let err = open_and_read(&p).expect_err("hostile input was accepted");
    assert!(
        err.contains("bad.hpkg"),
        "error does not name the file: {err}"
    );
    err
}

fn mini() -> Vec<u8> {
    fs::read(fixtures_dir().join("generated_mini-uncompressed.hpkg")).unwrap()
}

fn zlib_fixture() -> Vec<u8> {
    fs::read(fixtures_dir().join("hpkg-crate_ctags_source-5.8-5-source.hpkg")).unwrap()
}

fn set_be(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

#[test]
fn header_violations_are_named() {
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|b| b[0] = b'x'), "bad magic"),
        (Box::new(|b| set_be(b, 6, &1u16.to_be_bytes())), "legacy v1"),
        (
            Box::new(|b| set_be(b, 6, &3u16.to_be_bytes())),
            "unsupported format version 3",
        ),
        (
            Box::new(|b| set_be(b, 4, &40u16.to_be_bytes())),
            "header size 40",
        ),
        (
            Box::new(|b| set_be(b, 8, &1000u64.to_be_bytes())),
            "header says the file is 1000 bytes",
        ),
        (
            Box::new(|b| set_be(b, 18, &9u16.to_be_bytes())),
            "unknown heap compression 9",
        ),
        (
            Box::new(|b| set_be(b, 20, &4096u32.to_be_bytes())),
            "chunk size 4096",
        ),
        (
            Box::new(|b| set_be(b, 24, &u64::MAX.to_be_bytes())),
            "overflows",
        ),
        (
            Box::new(|b| set_be(b, 24, &1000u64.to_be_bytes())),
            "extends past the end",
        ),
        (
            Box::new(|b| set_be(b, 56, &(1u64 << 40).to_be_bytes())),
            "TOC section is",
        ),
        (
            Box::new(|b| set_be(b, 40, &(2u32 << 20).to_be_bytes())),
            "package attributes section is",
        ),
        (
            Box::new(|b| set_be(b, 56, &500u64.to_be_bytes())),
            "do not fit",
        ),
        (Box::new(|b| set_be(b, 72, &7u64.to_be_bytes())), "TOC"),
        (
            Box::new(|b| set_be(b, 48, &0u32.to_be_bytes())),
            "inconsistent",
        ),
    ];
    for (mutate, expected) in cases {
        let mut b = mini();
        mutate(&mut b);
        let err = error_of(&b);
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
}

#[test]
fn truncation_at_every_length_is_rejected() {
    let full = mini();
    let tmp = tempfile::tempdir().unwrap();
    for len in 0..full.len() {
        let p = write_tmp(tmp.path(), "t.hpkg", &full[..len]);
        let err = open_and_read(&p).expect_err("truncated file accepted");
        assert!(err.contains("t.hpkg"), "{err}");
    }
    // A compressed multi-chunk package, truncated at a few hundred points.
    let full = zlib_fixture();
    for len in (0..full.len()).step_by(1711) {
        let p = write_tmp(tmp.path(), "t.hpkg", &full[..len]);
        assert!(open_and_read(&p).is_err());
    }
}

/// Assembles an uncompressed package from raw sections, to express
/// structures our writer would never produce.
fn raw_package(
    data: &[u8],
    toc: &[u8],
    toc_strings: (u64, u64),
    attrs: &[u8],
    attr_strings: (u32, u32),
) -> Vec<u8> {
    let usize_ = (data.len() + toc.len() + attrs.len()) as u64;
    let h = PackageHeader {
        header_size: 80,
        version: 2,
        total_size: 80 + usize_,
        minor_version: 1,
        heap: HeapInfo {
            offset: 80,
            compression: Compression::None,
            size_compressed: usize_,
            size_uncompressed: usize_,
        },
        attributes_length: attrs.len() as u32,
        attributes_strings_length: attr_strings.0,
        attributes_strings_count: attr_strings.1,
        toc_length: toc.len() as u64,
        toc_strings_length: toc_strings.0,
        toc_strings_count: toc_strings.1,
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(toc);
    out.extend_from_slice(attrs);
    out
}

fn minimal_attrs() -> Vec<u8> {
    let info = PackageInfo {
        name: "x".into(),
        version: exos_hpkg::Version::parse("1").unwrap(),
        ..Default::default()
    };
    encode_section(&info.to_attrs()).bytes
}

fn attr_strings() -> (u32, u32) {
    let info = PackageInfo {
        name: "x".into(),
        version: exos_hpkg::Version::parse("1").unwrap(),
        ..Default::default()
    };
    let e = encode_section(&info.to_attrs());
    (e.strings_length as u32, e.strings_count as u32)
}

fn package_with_toc(toc: Vec<WAttr>, data: &[u8]) -> Vec<u8> {
    let t = encode_section(&toc);
    raw_package(
        data,
        &t.bytes,
        (t.strings_length, t.strings_count),
        &minimal_attrs(),
        attr_strings(),
    )
}

fn entry(name: &str, kids: Vec<WAttr>) -> WAttr {
    WAttr::string(id::DIRECTORY_ENTRY, name).with_children(kids)
}

#[test]
fn a_valid_raw_package_is_accepted() {
    // Guards the helpers: the hostile cases below differ from this one only
    // in the property they break.
    let b = package_with_toc(
        vec![entry(
            "a",
            vec![WAttr::new(
                id::DATA,
                WValue::Heap {
                    offset: 0,
                    size: 10,
                },
            )],
        )],
        b"0123456789",
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = write_tmp(tmp.path(), "ok.hpkg", &b);
    open_and_read(&p).unwrap();
}

#[test]
fn hostile_entry_names_are_rejected() {
    for name in ["..", ".", "a/b", "/"] {
        let err = error_of(&package_with_toc(vec![entry(name, vec![])], b""));
        assert!(err.contains("entry name"), "{name:?}: {err}");
    }
    // A NUL ends an inline string, so the rest of the name is misparsed as
    // attributes: still refused.
    error_of(&package_with_toc(vec![entry("a\0b", vec![])], b""));
    let err = error_of(&package_with_toc(vec![entry("", vec![])], b""));
    assert!(err.contains("empty entry name"), "{err}");
}

#[test]
fn duplicate_names_are_rejected() {
    let err = error_of(&package_with_toc(
        vec![entry("a", vec![]), entry("a", vec![])],
        b"",
    ));
    assert!(err.contains("duplicate entry \"a\""), "{err}");
}

#[test]
fn deep_nesting_is_bounded() {
    let mut e = entry("leaf", vec![]);
    for _ in 0..1500 {
        e = entry("d", vec![WAttr::uint(id::FILE_TYPE, 1), e]);
    }
    // encode_section recurses; run it on a big stack like any deep builder would.
    let bytes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || package_with_toc(vec![e], b""))
        .unwrap()
        .join()
        .unwrap();
    let err = error_of(&bytes);
    assert!(err.contains("nested deeper"), "{err}");
}

#[test]
fn out_of_range_references_are_rejected() {
    let err = error_of(&package_with_toc(
        vec![entry(
            "a",
            vec![WAttr::new(
                id::DATA,
                WValue::Heap {
                    offset: 5,
                    size: u64::MAX - 2,
                },
            )],
        )],
        b"0123456789",
    ));
    assert!(err.contains("outside"), "{err}");
    let err = error_of(&package_with_toc(
        vec![entry("a", vec![WAttr::uint(id::FILE_TYPE, 7)])],
        b"",
    ));
    assert!(err.contains("file type 7"), "{err}");
    let err = error_of(&package_with_toc(
        vec![entry(
            "a",
            vec![
                WAttr::uint(id::FILE_TYPE, 2),
                WAttr::new(id::DATA, WValue::Inline(b"x".to_vec())),
            ],
        )],
        b"",
    ));
    assert!(err.contains("not a regular file but has data"), "{err}");
    let err = error_of(&package_with_toc(
        vec![entry("f", vec![entry("child", vec![])])],
        b"",
    ));
    assert!(err.contains("not a directory but has children"), "{err}");
}

#[test]
fn string_index_out_of_range_is_rejected() {
    // dir:entry with a table-encoded string (encoding 1) pointing at index 5
    // of an empty table.
    let tag: u64 = ((1u64 << 11) | (1 << 10) | (3 << 7)) + 1;
    let mut toc = vec![0u8]; // empty string table
    exos_hpkg::attr::write_uleb128(&mut toc, tag);
    toc.push(5);
    toc.extend_from_slice(&[0, 0]);
    let err = error_of(&raw_package(
        b"",
        &toc,
        (1, 0),
        &minimal_attrs(),
        attr_strings(),
    ));
    assert!(err.contains("string index 5 out of range"), "{err}");
}

#[test]
fn oversized_inline_data_and_unknown_ids_are_rejected() {
    // Inline raw data claiming 9 bytes.
    let mut toc = vec![0u8];
    exos_hpkg::attr::write_uleb128(&mut toc, ((1u64 << 10) | (3 << 7)) + 1);
    toc.extend_from_slice(b"a\0");
    exos_hpkg::attr::write_uleb128(&mut toc, ((4u64 << 7) | id::DATA as u64) + 1);
    toc.push(9);
    toc.extend_from_slice(&[0; 9]);
    toc.extend_from_slice(&[0, 0]);
    let err = error_of(&raw_package(
        b"",
        &toc,
        (1, 0),
        &minimal_attrs(),
        attr_strings(),
    ));
    assert!(err.contains("inline data of 9 bytes"), "{err}");
    // Unknown attribute id 99 in a minor-1 file.
    let mut toc = vec![0u8];
    exos_hpkg::attr::write_uleb128(&mut toc, ((2u64 << 7) | 99) + 1);
    toc.push(1);
    toc.push(0);
    let err = error_of(&raw_package(
        b"",
        &toc,
        (1, 0),
        &minimal_attrs(),
        attr_strings(),
    ));
    assert!(err.contains("unknown attribute id 99"), "{err}");
}

/// A two-chunk zlib package whose first chunk is a stream of `inflated`
/// zeros; the TOC (stored raw in the second chunk) describes one 64 KiB file.
fn bomb(compression: Compression, inflated: usize) -> Vec<u8> {
    let payload = vec![0u8; inflated];
    let chunk0 = match compression {
        Compression::Zlib => {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&payload).unwrap();
            e.finish().unwrap()
        }
        _ => zstd::bulk::compress(&payload, 19).unwrap(),
    };
    let toc = encode_section(&[entry(
        "f",
        vec![WAttr::new(
            id::DATA,
            WValue::Heap {
                offset: 0,
                size: CHUNK_SIZE as u64,
            },
        )],
    )]);
    let attrs = minimal_attrs();
    let (asl, asc) = attr_strings();
    let mut chunk1 = toc.bytes.clone();
    chunk1.extend_from_slice(&attrs);
    let usize_ = CHUNK_SIZE as u64 + chunk1.len() as u64;
    let mut heap = chunk0.clone();
    heap.extend_from_slice(&chunk1); // raw: stored size == uncompressed size
    heap.extend_from_slice(&((chunk0.len() - 1) as u16).to_be_bytes());
    let h = PackageHeader {
        header_size: 80,
        version: 2,
        total_size: 80 + heap.len() as u64,
        minor_version: 1,
        heap: HeapInfo {
            offset: 80,
            compression,
            size_compressed: heap.len() as u64,
            size_uncompressed: usize_,
        },
        attributes_length: attrs.len() as u32,
        attributes_strings_length: asl,
        attributes_strings_count: asc,
        toc_length: toc.bytes.len() as u64,
        toc_strings_length: toc.strings_length,
        toc_strings_count: toc.strings_count,
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(&heap);
    out
}

#[test]
fn decompression_bombs_are_rejected() {
    for c in [Compression::Zlib, Compression::Zstd] {
        // Sanity: exactly 64 KiB inflates fine.
        let tmp = tempfile::tempdir().unwrap();
        let p = write_tmp(tmp.path(), "ok.hpkg", &bomb(c, CHUNK_SIZE as usize));
        open_and_read(&p).unwrap();
        // 64 MiB from a tiny chunk: refused at the chunk's declared size.
        let err = error_of(&bomb(c, 64 << 20));
        assert!(err.contains("heap chunk 0"), "{c:?}: {err}");
        // And a chunk that inflates short.
        let err = error_of(&bomb(c, 1000));
        assert!(err.contains("heap chunk 0"), "{c:?}: {err}");
    }
}

#[test]
fn chunk_table_pointing_outside_the_file_is_rejected() {
    let mut b = zlib_fixture();
    let h =
        Package::open(fixtures_dir().join("hpkg-crate_ctags_source-5.8-5-source.hpkg")).unwrap();
    let table_end = 80 + h.header().heap.size_compressed as usize;
    // Every entry says "65536 bytes": more than the compressed heap holds.
    let n = h.heap().chunk_count() as usize;
    for i in 0..n - 1 {
        let o = table_end - 2 * (n - 1) + 2 * i;
        b[o..o + 2].copy_from_slice(&0xffffu16.to_be_bytes());
    }
    let err = error_of(&b);
    assert!(err.contains("chunk table"), "{err}");
}

#[test]
fn repository_corruption_is_rejected() {
    let good = fs::read(fixtures_dir().join("hpkg-crate_repo.hpkr")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for len in (0..good.len()).step_by(997) {
        let p = write_tmp(tmp.path(), "r.hpkr", &good[..len]);
        let err = Repository::open(&p).unwrap_err();
        assert!(err.to_string().contains("r.hpkr"));
    }
    let mut b = good.clone();
    b[6..8].copy_from_slice(&1u16.to_be_bytes());
    let p = write_tmp(tmp.path(), "v1.hpkr", &b);
    assert!(matches!(
        Repository::open(&p).unwrap_err().kind(),
        ErrorKind::LegacyV1(_)
    ));
}

/// Every case of the hostile corpus (crates/exos-hostile) meets its
/// expectation, and nothing that opens was charged more memory than the
/// budget allows.
#[test]
fn the_hostile_corpus_is_refused_or_bounded() {
    use exos_hostile::Expect;
    let tmp = tempfile::tempdir().unwrap();
    for case in exos_hostile::cases() {
        let p = write_tmp(tmp.path(), &case.file_name(), &case.bytes);
        let limit = exos_hpkg::budget::Limits::default().for_file(case.bytes.len() as u64);
        let outcome = if case.extension == "hpkr" {
            Repository::open(&p).map(|_| ()).map_err(|e| e.to_string())
        } else {
            match Package::open(&p) {
                Ok(pkg) => {
                    assert!(
                        pkg.memory_usage() <= limit,
                        "{}: {} bytes charged, limit {limit}",
                        case.name,
                        pkg.memory_usage()
                    );
                    open_and_read(&p)
                }
                Err(e) => Err(e.to_string()),
            }
        };
        match (case.expect, outcome) {
            (Expect::Accepted, Ok(())) => {}
            (Expect::Refused(text), Err(e)) => {
                assert!(
                    e.contains(text),
                    "{}: expected {text:?} in {e:?}",
                    case.name
                );
                assert!(e.contains(&case.file_name()), "{}: {e}", case.name);
                if case.extension == "hpkg" {
                    assert!(Package::open(&p).is_err(), "{}", case.name);
                }
            }
            (Expect::DataError(text), Err(e)) => {
                assert!(
                    e.contains(text),
                    "{}: expected {text:?} in {e:?}",
                    case.name
                );
                assert!(Package::open(&p).is_ok(), "{}: should open", case.name);
            }
            (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.name),
        }
    }
}

#[test]
fn a_repository_without_base_url_uses_an_http_identifier() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_tmp(tmp.path(), "r.hpkr", &exos_hostile::hpkr_without_base_url());
    let r = Repository::open(&p).unwrap();
    assert_eq!(r.info.base_url, "https://repo.example/hostile");
}

#[test]
fn inline_data_reads_through_read_data_at() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_tmp(
        tmp.path(),
        "i.hpkg",
        &exos_hostile::package_of("inline", vec![exos_hostile::file("f", b"12345678", 1)]),
    );
    let pkg = Package::open(&p).unwrap();
    let e = pkg.toc().lookup_path("f").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(pkg.read_data_at(e.data(), 2, &mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"345678");
    // A reference that does not belong to this TOC is an error, not a panic.
    let alien = exos_hpkg::DataRef::Inline {
        start: u32::MAX - 3,
        len: 8,
    };
    assert!(pkg.read_data_at(alien, 0, &mut buf).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Random byte corruption of every fixture never panics, and reading an
    /// accepted file never panics either.
    #[test]
    fn random_corruption_never_panics(
        which in 0usize..64,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut all = fixtures("hpkg");
        all.extend(fixtures("hpkr"));
        let path = &all[which % all.len()];
        let mut b = fs::read(path).unwrap();
        for (i, v) in &flips {
            let i = i.index(b.len());
            b[i] ^= v | 1;
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len() + 1));
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = write_tmp(tmp.path(), "fuzz.bin", &b);
        let _ = open_and_read(&p);
        let _ = Repository::open(&p);
    }
}
