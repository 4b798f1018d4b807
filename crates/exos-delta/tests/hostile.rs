//! Crafted deltas, made here from code: each breaks one rule and must be
//! refused with an error naming the delta and the rule, without a panic,
//! without writing the output, and without allocating more than the caps.

use std::fs;
use std::path::{Path, PathBuf};

use exos_delta::format::{RefRange, MAGIC_V1, MAX_SEGMENT};
use exos_delta::{
    apply, make, DeltaHeader, DeltaReader, MakeOptions, Recipe, Segment, SegmentData,
};
use exos_hpkg::{build_from_dir, BuildOptions, Compression, PackageInfo};

fn build(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    build_files(dir, name, &[("file", content)], Compression::Zlib, None)
}

/// A package of `data/NAME` files, with this compression (and level).
fn build_files(
    dir: &Path,
    name: &str,
    files: &[(&str, &[u8])],
    compression: Compression,
    level: Option<i32>,
) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    fs::create_dir_all(src.join("data")).unwrap();
    for (file, content) in files {
        fs::write(src.join("data").join(file), content).unwrap();
    }
    let mut options = BuildOptions::with_compression(compression);
    if let Some(l) = level {
        options.level = l;
    }
    let out = dir.join(format!("{name}.hpkg"));
    let info = PackageInfo {
        name: "p".into(),
        version: exos_hpkg::Version::parse("1").unwrap(),
        ..Default::default()
    };
    build_from_dir(&src, &out, &info, options, &mut |_| {}, &mut |_| {}).unwrap();
    out
}

fn text(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b"abcdefghij klmnop\n"[(i * 7 + seed as usize) % 18])
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    old: PathBuf,
    new: PathBuf,
    delta: PathBuf,
}

fn fixture() -> Fixture {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let old = build(&dir, "old", &text(300_000, 1));
    let mut v = text(300_000, 1);
    v.splice(5000..5000, text(3000, 4));
    let new = build(&dir, "new", &v);
    let delta = dir.join("good.delta");
    make(&old, &new, &delta, &MakeOptions::default()).unwrap();
    Fixture {
        _dir: d,
        dir,
        old,
        new,
        delta,
    }
}

/// The good delta's parts, to be reassembled with one thing changed.
fn parts(f: &Fixture) -> (DeltaHeader, Vec<Segment>, Vec<Recipe>) {
    let mut r = DeltaReader::open(&f.delta).unwrap();
    let h = r.header().clone();
    let mut segs = Vec::new();
    while let Some(s) = r.next_segment().unwrap() {
        segs.push(s);
    }
    let mut recipes = Vec::new();
    while let Some(x) = r.next_recipe().unwrap() {
        recipes.push(x);
    }
    r.finish().unwrap();
    (h, segs, recipes)
}

fn assemble(mut h: DeltaHeader, segs: &[Segment], recipes: &[Recipe]) -> Vec<u8> {
    let mut s = Vec::new();
    for x in segs {
        x.render(&mut s);
    }
    let mut r = Vec::new();
    for x in recipes {
        x.render(&mut r);
    }
    h.segments_length = s.len() as u64;
    h.recipes_length = r.len() as u64;
    let mut out = h.render();
    out.extend(s);
    out.extend(r);
    out
}

/// Applies `bytes` as a delta; it must fail with `rule` in the message.
fn refused(f: &Fixture, bytes: &[u8], rule: &str) {
    let path = f.dir.join("crafted.delta");
    fs::write(&path, bytes).unwrap();
    let out = f.dir.join("out.hpkg");
    let err = apply(&f.old, &path, &out).expect_err(rule).to_string();
    assert!(err.contains(rule), "expected {rule:?} in: {err}");
    assert!(
        err.contains("crafted.delta"),
        "the error names the file: {err}"
    );
    assert!(!out.exists(), "{rule}: output written");
}

#[test]
fn the_good_delta_applies() {
    let f = fixture();
    let out = f.dir.join("out.hpkg");
    apply(&f.old, &f.delta, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&f.new).unwrap());
    let (h, s, r) = parts(&f);
    assert_eq!(assemble(h, &s, &r), fs::read(&f.delta).unwrap());
}

#[test]
fn a_version_1_delta_still_applies() {
    let f = fixture();
    let (h, mut s, r) = parts(&f);
    // Version 1 has no copies: the same bytes as a frame.
    let old = exos_hpkg::Package::open(&f.old).unwrap();
    for seg in &mut s {
        if seg.data == SegmentData::Copy {
            let mut bytes = Vec::new();
            for r in &seg.refs {
                let mut b = vec![0; r.len as usize];
                old.heap()
                    .read_exact_at_uncached(r.offset, &mut b, &mut None)
                    .unwrap();
                bytes.extend(b);
            }
            seg.refs.clear();
            seg.data = SegmentData::Frame(zstd::bulk::compress(&bytes, 3).unwrap());
        }
    }
    let mut b = assemble(h, &s, &r);
    b[..8].copy_from_slice(&MAGIC_V1);
    let path = f.dir.join("v1.delta");
    fs::write(&path, &b).unwrap();
    let out = f.dir.join("out.hpkg");
    apply(&f.old, &path, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&f.new).unwrap());
}

#[test]
fn unchanged_files_are_copied_and_changed_ones_compressed() {
    let d = tempfile::tempdir().unwrap();
    // Large enough for several pieces; only part of the second file changes.
    let (a, b) = (text(1_500_000, 1), text(1_200_000, 2));
    let mut b2 = b.clone();
    b2[1_000_000..1_000_010].copy_from_slice(b"CHANGED!!!");
    let old = build_files(
        d.path(),
        "old",
        &[("a", &a), ("b", &b)],
        Compression::Zlib,
        None,
    );
    let new = build_files(
        d.path(),
        "new",
        &[("a", &a), ("b", &b2)],
        Compression::Zlib,
        None,
    );
    let delta = d.path().join("d.delta");
    let stats = make(&old, &new, &delta, &MakeOptions::default()).unwrap();
    let mut r = DeltaReader::open(&delta).unwrap();
    let (mut copied, mut compressed) = (0u64, 0u64);
    while let Some(s) = r.next_segment().unwrap() {
        match s.data {
            SegmentData::Copy => {
                copied += s.out_len as u64;
                assert_eq!(s.reference_len(), s.out_len as u64);
            }
            SegmentData::Frame(_) => compressed += s.out_len as u64,
        }
    }
    assert!(stats.segments_copied >= 2, "{stats:?}");
    // a whole, and b but for the piece holding the change (and the metadata).
    assert!(
        copied >= 1_500_000 + 600_000,
        "copied {copied}, compressed {compressed}"
    );
    assert!(
        compressed < 1_000_000,
        "copied {copied}, compressed {compressed}"
    );
    let out = d.path().join("out.hpkg");
    apply(&old, &delta, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&new).unwrap());
}

#[test]
fn the_recompression_level_holds_for_more_than_the_first_chunk() {
    // The first chunk compresses the same at several levels (a repeated
    // line); the rest only at the level the package was built with. One
    // chunk is not enough to find it (tzdata's delta carried every chunk
    // as stored that way).
    let d = tempfile::tempdir().unwrap();
    let first: Vec<u8> = b"same line\n".repeat(6_600);
    let rest: Vec<u8> = (0..600_000u32)
        .flat_map(|i| format!("{} {}\n", i.wrapping_mul(2_654_435_761) % 1000, i % 7).into_bytes())
        .collect();
    let build = |name: &str, rest: &[u8]| {
        build_files(
            d.path(),
            name,
            &[("0", &first), ("1", rest)],
            Compression::Zstd,
            Some(9),
        )
    };
    let old = build("old", &rest);
    let mut rest2 = rest.clone();
    rest2[100..104].copy_from_slice(b"XXXX");
    let new = build("new", &rest2);
    let stats = make(
        &old,
        &new,
        &d.path().join("d.delta"),
        &MakeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (stats.recompression_level, stats.chunks_literal),
        (9, 0),
        "{stats:?}"
    );
}

#[test]
fn crafted_headers_are_refused() {
    let f = fixture();
    let good = fs::read(&f.delta).unwrap();
    let mut b = good.clone();
    b[0] = b'X';
    refused(&f, &b, "magic");
    refused(&f, &good[..100], "shorter than the 128-byte header");
    let (h, s, r) = parts(&f);
    let with = |g: &dyn Fn(&mut DeltaHeader)| {
        let mut h = h.clone();
        g(&mut h);
        assemble(h, &s, &r)
    };
    refused(
        &f,
        &with(&|h| h.level = 12),
        "level 12 is out of range for zlib",
    );
    refused(
        &f,
        &with(&|h| h.package_header = vec![0; 5000]),
        "package header of 5000 bytes",
    );
    let mut b = assemble(h.clone(), &s, &r);
    b.extend_from_slice(b"trailing");
    refused(&f, &b, "do not add up");
    refused(&f, &with(&|h| h.heap_uncompressed += 1), "segments make");
    refused(&f, &with(&|h| h.to.sha256.0[0] ^= 1), "the delta promises");
    // Made from another package.
    let path = f.dir.join("crafted.delta");
    fs::write(&path, with(&|h| h.from.sha256.0[5] ^= 1)).unwrap();
    let err = apply(&f.old, &path, &f.dir.join("o"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("made from a package with SHA-256"), "{err}");
}

#[test]
fn crafted_segments_are_refused() {
    let f = fixture();
    let (h, s, r) = parts(&f);
    // The first compressed segment (the fixture's first is a copy).
    let k = s
        .iter()
        .position(|x| matches!(x.data, SegmentData::Frame(_)))
        .unwrap();
    let with = |g: &dyn Fn(&mut Vec<Segment>)| {
        let mut s = s.clone();
        g(&mut s);
        assemble(h.clone(), &s, &r)
    };
    refused(
        &f,
        &with(&|s| s[k].out_len = MAX_SEGMENT + 1),
        "segment of 16777217 bytes",
    );
    refused(&f, &with(&|s| s[k].out_len = 0), "segment of 0 bytes");
    refused(
        &f,
        &with(&|s| s[k].refs = vec![RefRange { offset: 0, len: 1 }; 5000]),
        "5000 reference ranges",
    );
    refused(
        &f,
        &with(&|s| {
            s[k].refs = vec![
                RefRange {
                    offset: 0,
                    len: u32::MAX
                };
                20
            ]
        }),
        "references more than",
    );
    refused(
        &f,
        &with(&|s| {
            s[k].refs = vec![RefRange {
                offset: u64::MAX - 2,
                len: 100,
            }]
        }),
        "outside the old package",
    );
    refused(
        &f,
        &with(&|s| s[k].refs = vec![RefRange { offset: 0, len: 0 }]),
        "empty reference range",
    );
    refused(
        &f,
        &with(&|s| s[k].data = SegmentData::Frame(vec![7; 4000])),
        "zstd",
    );
    // A copy of a reference that is not the segment's length.
    refused(
        &f,
        &with(&|s| {
            s[k].refs = vec![RefRange {
                offset: 0,
                len: s[k].out_len + 1,
            }];
            s[k].data = SegmentData::Copy
        }),
        "a copy segment of",
    );
    // A copy (an empty frame) in a version-1 delta.
    let mut v1 = with(&|s| s[k].data = SegmentData::Copy);
    v1[..8].copy_from_slice(&MAGIC_V1);
    refused(&f, &v1, "copy segments need version 2");
    // A frame claiming far more output than its segment.
    refused(&f, &with(&|s| s[k].out_len -= 1), "zstd");
    refused(
        &f,
        &with(&|s| {
            let extra = s[k].clone();
            s.push(extra)
        }),
        "more than the",
    );
    // A frame longer than zstd could ever need for its output.
    refused(
        &f,
        &with(&|s| {
            s[k].out_len = 10;
            s[k].data = SegmentData::Frame(vec![0; 2000])
        }),
        "zstd never needs more",
    );
    // The section ends inside a field.
    // A frame length past the end of the section.
    let mut b = with(&|_| {});
    let hl = 128 + h.package_header.len();
    let frame_len_at = hl + 4 + 2 + 12 * s[0].refs.len();
    let seg_end = hl
        + s.iter()
            .map(|x| {
                let mut v = Vec::new();
                x.render(&mut v);
                v.len()
            })
            .sum::<usize>();
    let past = (seg_end - (frame_len_at + 4) + 1) as u32;
    b[frame_len_at..frame_len_at + 4].copy_from_slice(&past.to_le_bytes());
    refused(&f, &b, "section ends");
}

#[test]
fn crafted_recipes_are_refused() {
    let f = fixture();
    let (h, s, r) = parts(&f);
    let with = |g: &dyn Fn(&mut Vec<Recipe>)| {
        let mut r = r.clone();
        g(&mut r);
        assemble(h.clone(), &s, &r)
    };
    refused(
        &f,
        &with(&|r| r.truncate(r.len() - 1)),
        "fewer recipes than chunks",
    );
    refused(
        &f,
        &with(&|r| r.push(Recipe::Raw)),
        "more recipes than chunks",
    );
    refused(
        &f,
        &with(&|r| r[0] = Recipe::Recompress { stored_len: 70_000 }),
        "recompressed chunk of 70000 bytes",
    );
    refused(
        &f,
        &with(&|r| r[0] = Recipe::Recompress { stored_len: 5 }),
        "the delta expects 5",
    );
    refused(
        &f,
        &with(&|r| r[0] = Recipe::Literal(vec![1; 65536])),
        "literal chunk of 65536 bytes",
    );
    refused(
        &f,
        &with(&|r| r[0] = Recipe::Literal(vec![1; 100])),
        "the delta promises",
    );
    let mut b = with(&|_| {});
    let n = b.len();
    let last_tag = n - r
        .iter()
        .rev()
        .map(|x| {
            let mut v = Vec::new();
            x.render(&mut v);
            v.len()
        })
        .next()
        .unwrap();
    b[last_tag] = 9;
    refused(&f, &b, "unknown chunk recipe 9");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Any change to a good delta: an error or the exact package, never a
    /// panic, never another file.
    #[test]
    fn mutated_deltas_fail_cleanly(at in 0usize..100_000, xor in 1u8..=255, cut in proptest::option::of(0usize..100_000)) {
        use std::sync::OnceLock;
        static F: OnceLock<Fixture> = OnceLock::new();
        let f = F.get_or_init(fixture);
        let mut b = fs::read(&f.delta).unwrap();
        let i = at % b.len();
        b[i] ^= xor;
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.delta");
        fs::write(&path, &b).unwrap();
        let out = dir.path().join("out.hpkg");
        match apply(&f.old, &path, &out) {
            Ok(_) => proptest::prop_assert_eq!(fs::read(&out).unwrap(), fs::read(&f.new).unwrap()),
            Err(_) => proptest::prop_assert!(!out.exists()),
        }
    }
}

#[test]
fn making_a_delta_reports_every_part_once() {
    let f = fixture();
    let seen = std::sync::Mutex::new(Vec::new());
    let out = f.dir.join("again.delta");
    exos_delta::make_with_progress(
        &f.old,
        &f.new,
        &out,
        &MakeOptions::default(),
        &|done, total| {
            seen.lock().unwrap().push((done, total));
        },
    )
    .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    let total = seen[0].1;
    assert!(total > 1, "{seen:?}");
    assert_eq!(seen.len() as u64, total, "one report per part");
    assert!(seen.iter().all(|&(_, t)| t == total));
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    // The same bytes as without progress.
    assert_eq!(fs::read(&out).unwrap(), fs::read(&f.delta).unwrap());
}
