//! Encrypted packages: arbitrary bytes as an encrypted file (header rules,
//! blocks that must authenticate), as a package key file, and as the
//! plaintext of a package sealed here with a fixed key — read back through
//! `EncryptedSource` at offsets the input chooses (every byte must be the
//! plaintext's) and opened as a package, every entry read.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use exos_hpkg::crypt::{EncryptedSource, EnvelopeHeader, PackageKey};
use exos_hpkg::Source;
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PackageKey {
    static KEY: OnceLock<PackageKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PackageKey::parse(
            format!("exos-package-key-v1\n{}\n", "5a".repeat(32)).as_bytes(),
            std::path::Path::new("fuzz.pkey"),
        )
        .expect("fixed key")
    })
}

fn keys() -> exos_hpkg::OpenOptions {
    exos_hpkg::OpenOptions::with_keys(exos_hpkg::crypt::KeyRing::new([key().clone()]))
}

fn walk(pkg: &exos_hpkg::Package) {
    common::read_every_entry(pkg, false);
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    let _ = PackageKey::parse(data, std::path::Path::new("fuzz.pkey"));
    let _ = EnvelopeHeader::parse(data, data.len() as u64);
    // As an encrypted file.
    if let Ok(pkg) = exos_hpkg::Package::from_file(common::memfile(data), "fuzz.hpkg", &keys()) {
        walk(&pkg);
    }
    // As the plaintext of one.
    if data.is_empty() {
        return;
    }
    let sealed = exos_hpkg::crypt::seal(data, key, [7; 32]).expect("sealing in memory");
    let Ok(src) = EncryptedSource::open(Arc::new(common::memfile(&sealed)), &keys().keys) else {
        panic!("a file sealed with a key given to the open does not open");
    };
    assert_eq!(src.len().ok(), Some(data.len() as u64));
    for pick in data.chunks(4).take(8) {
        let a = u32::from_le_bytes([
            pick[0],
            *pick.get(1).unwrap_or(&0),
            *pick.get(2).unwrap_or(&0),
            0,
        ]) as usize
            % data.len();
        let n = (*pick.get(3).unwrap_or(&1) as usize * 613) % (data.len() - a + 1);
        let mut buf = vec![0u8; n];
        src.read_exact_at(&mut buf, a as u64)
            .expect("reading sealed bytes back");
        assert_eq!(buf, data[a..a + n], "sealed bytes read back differently");
    }
    if let Ok(pkg) = exos_hpkg::Package::from_source(Arc::new(src), "fuzz.hpkg", &Default::default())
    {
        walk(&pkg);
    }
});
