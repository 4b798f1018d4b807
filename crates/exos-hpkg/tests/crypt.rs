//! Encrypted packages: what is sealed reads back exactly with its key; a
//! missing key, a wrong key, a changed, swapped or moved unit, a changed
//! unit table or header and a truncated file are each refused with an
//! error saying so. The crafted files are made here from the good one.
//! Units follow the package's stored chunks, and loading a chunk is one
//! read of the encrypted file.

use std::fs;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use exos_hpkg::crypt::{self, EncryptedSource, KeyRing, PackageKey, SealedUnit, HEADER_SIZE};
use exos_hpkg::{build_from_dir, BuildOptions, Compression, OpenOptions, Package, PackageInfo};

/// A package of about 300 KB (several 64 KiB chunks), stored uncompressed.
fn package(dir: &Path) -> PathBuf {
    package_with(dir, Compression::None)
}

fn package_with(dir: &Path, compression: Compression) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("d/noise"), &noise).unwrap();
    fs::write(src.join("text"), b"encrypted but readable\n".repeat(4000)).unwrap();
    let out = dir.join(format!("p-{compression:?}.hpkg"));
    let info = PackageInfo {
        name: "secret".into(),
        version: exos_hpkg::Version::parse("1").unwrap(),
        ..Default::default()
    };
    build_from_dir(
        &src,
        &out,
        &info,
        BuildOptions {
            compression,
            ..BuildOptions::default()
        },
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    out
}

fn read_all(p: &Package) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (_, e) in p.toc().walk() {
        if e.kind() == exos_hpkg::EntryKind::File {
            let mut buf = vec![0u8; e.size() as usize];
            let n = p.read_at(e, 0, &mut buf).unwrap();
            buf.truncate(n);
            out.push((e.path(), buf));
        }
    }
    out
}

fn err(path: &Path, keys: &KeyRing) -> String {
    match Package::open_with(path, &OpenOptions::with_keys(keys.clone())) {
        Ok(p) => {
            // Opened: the damage must show when the data is read.
            let mut msgs = String::new();
            for (_, e) in p.toc().walk() {
                let mut buf = vec![0u8; e.size() as usize];
                if let Err(x) = p.read_at(e, 0, &mut buf) {
                    msgs = x.to_string();
                    break;
                }
            }
            assert!(!msgs.is_empty(), "{} read without error", path.display());
            msgs
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn sealed_packages_read_back_and_every_kind_of_damage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plain = package(d);
    let key = PackageKey::generate().unwrap();
    let sealed = d.join("sealed.hpkg");
    let size = crypt::encrypt_file(&plain, &key, &sealed).unwrap();
    let bytes = fs::read(&sealed).unwrap();
    assert_eq!(bytes.len() as u64, size);
    let units = sealed_units(&sealed, &key);
    assert!(units.len() >= 4, "only {} units", units.len());
    // Nothing of the package shows through.
    let text = b"encrypted but readable";
    assert!(!bytes.windows(text.len()).any(|w| w == text));
    assert!(!bytes.windows(6).any(|w| w == b"secret"));

    // Without the key: the key it needs is named.
    let keyless = Package::open(&sealed).unwrap_err();
    assert!(
        matches!(keyless.kind(), exos_hpkg::ErrorKind::Encrypted(id) if *id == key.id().to_string()),
        "{keyless}"
    );

    // Only the open given the key decrypts: keys are never process-wide.
    let keys = KeyRing::new([key.clone()]);
    let expected = read_all(&Package::open(&plain).unwrap());
    let with_key = OpenOptions::with_keys(keys.clone());
    assert_eq!(
        read_all(&Package::open_with(&sealed, &with_key).unwrap()),
        expected
    );
    assert!(Package::open(&sealed).is_err(), "opened without its key");
    // Sealing twice gives different bytes (a fresh salt each time).
    let again = d.join("again.hpkg");
    crypt::encrypt_file(&plain, &key, &again).unwrap();
    assert_ne!(fs::read(&again).unwrap(), bytes);

    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        fs::write(&p, b).unwrap();
        p
    };
    let unit_at = |i: usize| units[i].sealed.start as usize;
    // One bit changed in a unit's ciphertext, in a tag, in the unit table
    // (what it says, its tag).
    for at in [
        unit_at(1) + 10,
        unit_at(2) - 3,
        HEADER_SIZE + 5,
        unit_at(0) - 1,
    ] {
        let mut b = bytes.clone();
        b[at] ^= 4;
        let e = err(&write("flip.hpkg", &b), &keys);
        assert!(e.contains("does not authenticate"), "{at}: {e}");
    }
    // Units 2 and 3 swapped (two whole 64 KiB chunks of the same size).
    assert_eq!(
        units[2].sealed.end - units[2].sealed.start,
        units[3].sealed.end - units[3].sealed.start
    );
    let mut b = bytes.clone();
    let (one, two) = (unit_at(2), unit_at(3));
    let len = two - one;
    let first = b[one..two].to_vec();
    b.copy_within(two..two + len, one);
    b[two..two + len].copy_from_slice(&first);
    let e = err(&write("swap.hpkg", &b), &keys);
    assert!(e.contains("does not authenticate"), "{e}");
    // A unit taken from another sealing of the same package (same key).
    let other = fs::read(&again).unwrap();
    let mut b = bytes.clone();
    b[one..two].copy_from_slice(&other[one..two]);
    let e = err(&write("moved.hpkg", &b), &keys);
    assert!(e.contains("does not authenticate"), "{e}");
    // The header changed (the plain size kept consistent is still refused).
    let mut b = bytes.clone();
    b[40] ^= 1; // the salt
    let e = err(&write("salt.hpkg", &b), &keys);
    assert!(e.contains("does not authenticate"), "{e}");
    // Truncated, padded.
    let e = err(&write("short.hpkg", &bytes[..bytes.len() - 1]), &keys);
    assert!(e.contains("truncated or padded"), "{e}");
    let mut b = bytes.clone();
    b.push(0);
    let e = err(&write("long.hpkg", &b), &keys);
    assert!(e.contains("truncated or padded"), "{e}");
    // A wrong key: a header naming another registered key.
    let wrong = PackageKey::generate().unwrap();
    let both = KeyRing::new([key.clone(), wrong.clone()]);
    let mut b = bytes.clone();
    b[16..32].copy_from_slice(&wrong.id().0);
    let e = err(&write("wrong.hpkg", &b), &both);
    assert!(e.contains("wrong key"), "{e}");
    // Reserved bytes, version, cipher, unit count.
    for (at, what) in [
        (72, "reserved"),
        (8, "version"),
        (10, "cipher"),
        (12, "units"),
        (13, "units"),
    ] {
        let mut b = bytes.clone();
        b[at] ^= 1;
        let e = err(&write("hdr.hpkg", &b), &keys);
        assert!(e.contains(what), "{what}: {e}");
    }
    // A file sealed by the first version is told to be sealed again.
    let mut b = bytes.clone();
    b[8] = 1;
    let e = err(&write("v1.hpkg", &b), &keys);
    assert!(e.contains("encrypt the plain package again"), "{e}");
    // An encrypted package is not encrypted again.
    assert!(crypt::encrypt_file(&sealed, &key, &d.join("twice.hpkg"))
        .unwrap_err()
        .to_string()
        .contains("already encrypted"));
}

#[test]
fn key_files_parse_strictly() {
    let k = PackageKey::generate().unwrap();
    let p = Path::new("k.pkey");
    let back = PackageKey::parse(k.render().as_bytes(), p).unwrap();
    assert_eq!(back.id(), k.id());
    for (text, rule) in [
        ("", "first line"),
        ("exos-package-key-v1\n", "no key line"),
        ("exos-package-key-v1\nabc\n", "64 hex digits"),
        (
            "exos-package-key-v1\n00000000000000000000000000000000000000000000000000000000000000zz\n",
            "64 hex digits",
        ),
        ("RWQ minisign\n", "first line"),
    ] {
        let e = PackageKey::parse(text.as_bytes(), p).unwrap_err().to_string();
        assert!(e.contains(rule) && e.contains("k.pkey"), "{text:?}: {e}");
    }
    let two = format!("{}{}", k.render(), "00".repeat(32));
    assert!(PackageKey::parse(two.as_bytes(), p)
        .unwrap_err()
        .to_string()
        .contains("more than one"));
}

fn sealed_units(sealed: &Path, key: &PackageKey) -> Vec<SealedUnit> {
    let bytes = fs::read(sealed).unwrap();
    let header = crypt::EnvelopeHeader::parse(&bytes, bytes.len() as u64).unwrap();
    let src = EncryptedSource::with_key(Arc::new(bytes), header, key).unwrap();
    src.units().collect()
}

/// Counts the reads that reach the encrypted file.
#[derive(Debug)]
struct Counting(Vec<u8>, AtomicUsize);

impl exos_hpkg::Source for Counting {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.1.fetch_add(1, Ordering::Relaxed);
        exos_hpkg::Source::read_exact_at(&self.0, buf, offset)
    }
}

#[test]
fn units_follow_the_stored_chunks_and_a_chunk_is_one_read() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for compression in [Compression::Zlib, Compression::Zstd, Compression::None] {
        let plain = package_with(d, compression);
        let key = PackageKey::generate().unwrap();
        let sealed = d.join("sealed.hpkg");
        crypt::encrypt_file(&plain, &key, &sealed).unwrap();
        let units = sealed_units(&sealed, &key);
        let chunks = Package::open(&plain)
            .unwrap()
            .heap()
            .chunk_file_boundaries();
        assert!(chunks.len() > 3, "{compression:?}: {chunks:?}");
        // Every stored chunk is exactly one unit.
        for w in chunks.windows(2) {
            assert!(
                units.iter().any(|u| u.plain == (w[0]..w[1])),
                "{compression:?}: chunk {w:?} is not one unit"
            );
        }
        // Units tile the package and the file.
        let plain_size = fs::metadata(&plain).unwrap().len();
        assert_eq!(units.last().unwrap().plain.end, plain_size);
        assert_eq!(
            units.last().unwrap().sealed.end,
            fs::metadata(&sealed).unwrap().len()
        );
        for w in units.windows(2) {
            assert_eq!(w[0].plain.end, w[1].plain.start);
            assert_eq!(w[0].sealed.end, w[1].sealed.start);
        }
        // Reading a chunk's stored bytes is one read of the file; a part
        // of a unit read again comes from the unit kept.
        let bytes = fs::read(&sealed).unwrap();
        let plain_bytes = fs::read(&plain).unwrap();
        let header = crypt::EnvelopeHeader::parse(&bytes, bytes.len() as u64).unwrap();
        let counting = Arc::new(Counting(bytes, AtomicUsize::new(0)));
        let src = EncryptedSource::with_key(counting.clone(), header, &key).unwrap();
        let reads = || counting.1.load(Ordering::Relaxed);
        for w in chunks.windows(2) {
            let before = reads();
            let mut buf = vec![0u8; (w[1] - w[0]) as usize];
            exos_hpkg::Source::read_exact_at(&src, &mut buf, w[0]).unwrap();
            assert_eq!(buf, plain_bytes[w[0] as usize..w[1] as usize]);
            assert_eq!(reads() - before, 1, "{compression:?}: chunk {w:?}");
        }
        let mid = (chunks[1] + chunks[2]) / 2;
        let mut a = [0u8; 100];
        exos_hpkg::Source::read_exact_at(&src, &mut a, mid).unwrap();
        let before = reads();
        let mut b = [0u8; 100];
        exos_hpkg::Source::read_exact_at(&src, &mut b, mid + 50).unwrap();
        assert_eq!(reads(), before, "{compression:?}: a kept unit read again");
        assert_eq!(a[50..], b[..50]);
        assert_eq!(b, plain_bytes[mid as usize + 50..mid as usize + 150]);
        // A read across many units, not on their edges, is one read too.
        let before = reads();
        let (from, to) = (chunks[0] + 7, chunks[chunks.len() - 1] - 9);
        let mut all = vec![0u8; (to - from) as usize];
        exos_hpkg::Source::read_exact_at(&src, &mut all, from).unwrap();
        assert_eq!(all, plain_bytes[from as usize..to as usize]);
        assert_eq!(reads() - before, 1);
    }
}
