//! Encrypted packages: what is sealed reads back exactly with its key; a
//! missing key, a wrong key, a changed, swapped or moved block, a changed
//! header and a truncated file are each refused with an error saying so.
//! The crafted files are made here from the good one.

use std::fs;
use std::path::{Path, PathBuf};

use exos_hpkg::crypt::{self, PackageKey, BLOCK_SIZE, HEADER_SIZE, TAG_SIZE};
use exos_hpkg::{build_from_dir, BuildOptions, Compression, Package, PackageInfo};

/// A package of about 300 KB (several 64 KiB blocks once sealed).
fn package(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("d/noise"), &noise).unwrap();
    fs::write(src.join("text"), b"encrypted but readable\n".repeat(4000)).unwrap();
    let out = dir.join("p.hpkg");
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
            compression: Compression::None,
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

fn err(path: &Path) -> String {
    match Package::open(path) {
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
    let blocks = (bytes.len() as u64 - HEADER_SIZE as u64).div_ceil(BLOCK_SIZE + TAG_SIZE);
    assert!(blocks >= 3, "only {blocks} blocks");
    // Nothing of the package shows through.
    let text = b"encrypted but readable";
    assert!(!bytes.windows(text.len()).any(|w| w == text));
    assert!(!bytes.windows(6).any(|w| w == b"secret"));

    // Without the key: the key it needs is named.
    let e = Package::open(&sealed).unwrap_err().to_string();
    assert!(
        e.contains(&key.id().to_string()) && e.contains("--key"),
        "{e}"
    );

    crypt::register_key(key.clone());
    let expected = read_all(&Package::open(&plain).unwrap());
    assert_eq!(read_all(&Package::open(&sealed).unwrap()), expected);
    // Sealing twice gives different bytes (a fresh salt each time).
    let again = d.join("again.hpkg");
    crypt::encrypt_file(&plain, &key, &again).unwrap();
    assert_ne!(fs::read(&again).unwrap(), bytes);

    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        fs::write(&p, b).unwrap();
        p
    };
    let block_at = |i: u64| (HEADER_SIZE as u64 + i * (BLOCK_SIZE + TAG_SIZE)) as usize;
    // One bit changed in a block's ciphertext, in a tag.
    for at in [block_at(1) + 100, block_at(2) - 3] {
        let mut b = bytes.clone();
        b[at] ^= 4;
        let e = err(&write("flip.hpkg", &b));
        assert!(e.contains("does not authenticate"), "{at}: {e}");
    }
    // Blocks 1 and 2 swapped.
    let mut b = bytes.clone();
    let (one, two) = (block_at(1), block_at(2));
    let len = two - one;
    let first = b[one..two].to_vec();
    b.copy_within(two..two + len, one);
    b[two..two + len].copy_from_slice(&first);
    let e = err(&write("swap.hpkg", &b));
    assert!(e.contains("does not authenticate"), "{e}");
    // A block taken from another sealing of the same package (same key).
    let other = fs::read(&again).unwrap();
    let mut b = bytes.clone();
    b[one..two].copy_from_slice(&other[one..two]);
    let e = err(&write("moved.hpkg", &b));
    assert!(e.contains("does not authenticate"), "{e}");
    // The header changed (the plain size kept consistent is still refused).
    let mut b = bytes.clone();
    b[40] ^= 1; // the salt
    let e = err(&write("salt.hpkg", &b));
    assert!(e.contains("does not authenticate"), "{e}");
    // Truncated, padded.
    let e = err(&write("short.hpkg", &bytes[..bytes.len() - 1]));
    assert!(e.contains("truncated or padded"), "{e}");
    let mut b = bytes.clone();
    b.push(0);
    let e = err(&write("long.hpkg", &b));
    assert!(e.contains("truncated or padded"), "{e}");
    // A wrong key: a header naming another registered key.
    let wrong = PackageKey::generate().unwrap();
    crypt::register_key(wrong.clone());
    let mut b = bytes.clone();
    b[16..32].copy_from_slice(&wrong.id().0);
    let e = err(&write("wrong.hpkg", &b));
    assert!(e.contains("wrong key"), "{e}");
    // Reserved bytes, version, cipher.
    for (at, what) in [
        (72, "reserved"),
        (8, "version"),
        (10, "cipher"),
        (13, "block size"),
    ] {
        let mut b = bytes.clone();
        b[at] ^= 1;
        let e = err(&write("hdr.hpkg", &b));
        assert!(e.contains(what), "{what}: {e}");
    }
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
