//! Trust through files, as a root keeps them: key and signature files,
//! `trust.json`, and admission of a package by its `.minisig` — with the
//! tampering each check is there for, and errors that name the file.

use std::fs;

use exos_root::{Layer, Layout};
use exos_trust::{
    beside, read_bounded, read_public_key, read_secret_key, read_signature, Blake2b512Digest,
    FileDigest, Policy, SecretKey, SignatureError, TrustError, TrustStore, TrustedKey, Verdict,
};

/// A package-like file, its signature beside it, and the key that made it.
fn signed_file(dir: &std::path::Path, key: &SecretKey) -> (std::path::PathBuf, FileDigest) {
    let file = dir.join("hello-1.hpkg");
    fs::write(&file, b"package bytes").unwrap();
    let digest = FileDigest::of_file(&file).unwrap();
    let sig = key
        .sign(&digest.blake2b, "signature from exos", "file:hello-1.hpkg")
        .unwrap();
    fs::write(beside(&file), sig.render()).unwrap();
    (file, digest)
}

#[test]
fn keys_written_as_files_read_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let secret = tmp.path().join("k.key");
    let public = tmp.path().join("k.pub");
    fs::write(&secret, key.render()).unwrap();
    fs::write(&public, key.public().render()).unwrap();
    assert_eq!(read_secret_key(&secret).unwrap().id, key.id);
    assert_eq!(read_public_key(&public).unwrap(), key.public());
    // A public key where a secret key is expected: the error names the file.
    let err = read_secret_key(&public).unwrap_err();
    assert!(
        matches!(&err, TrustError::Format { path, .. } if path == &public),
        "{err:?}"
    );
    let err = read_public_key(&tmp.path().join("missing.pub")).unwrap_err();
    assert!(matches!(err, TrustError::Io { .. }), "{err:?}");
}

#[test]
fn a_signature_admits_its_file_in_a_signed_layer_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let (file, digest) = signed_file(tmp.path(), &key);
    let mut store = TrustStore::default();
    store.policy.system = Policy::Signed;
    store.keys.push(TrustedKey::new(
        &key.public(),
        "vendor",
        vec![Layer::System],
    ));
    let sig = beside(&file);
    assert_eq!(
        store.admit(Layer::System, &digest, Some(&sig)).unwrap(),
        Verdict::Signed {
            key: key.id.to_string(),
            name: "vendor".into()
        }
    );
    // Unsigned: refused where signatures are required, fine elsewhere.
    assert!(matches!(
        store.admit(Layer::System, &digest, None),
        Err(SignatureError::Unsigned(Layer::System))
    ));
    assert_eq!(
        store.admit(Layer::User, &digest, None).unwrap(),
        Verdict::Unsigned
    );
    // The same signature over other bytes.
    fs::write(&file, b"other bytes!!").unwrap();
    let other = FileDigest::of_file(&file).unwrap();
    assert!(matches!(
        store.admit(Layer::System, &other, Some(&sig)),
        Err(SignatureError::Contents)
    ));
    // A key trusted for another layer only.
    let mut common_only = store.clone();
    common_only.keys[0].layers = vec![Layer::Common];
    assert!(matches!(
        common_only.admit(Layer::System, &digest, Some(&sig)),
        Err(SignatureError::WrongLayer { .. })
    ));
    // A key nobody trusts.
    let stranger = SecretKey::generate().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let (theirs, d2) = signed_file(&elsewhere, &stranger);
    assert!(matches!(
        store.admit(Layer::System, &d2, Some(&beside(&theirs))),
        Err(SignatureError::UntrustedKey(_))
    ));
}

#[test]
fn an_edited_trusted_comment_breaks_the_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let (file, digest) = signed_file(tmp.path(), &key);
    let sig_path = beside(&file);
    let text = fs::read_to_string(&sig_path).unwrap();
    fs::write(
        &sig_path,
        text.replace("file:hello-1.hpkg", "file:other-9.hpkg"),
    )
    .unwrap();
    let sig = read_signature(&sig_path).unwrap();
    assert!(matches!(
        key.public().verify(&sig, &digest.blake2b),
        Err(SignatureError::TrustedComment)
    ));
}

#[test]
fn trust_json_round_trips_and_a_broken_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path());
    fs::create_dir_all(layout.state_dir()).unwrap();
    // No file: trusts nobody, takes anything.
    let empty = TrustStore::read(&layout).unwrap();
    assert_eq!(empty, TrustStore::default());
    let key = SecretKey::generate().unwrap();
    let mut store = TrustStore::default();
    store.policy.common = Policy::Signed;
    store
        .keys
        .push(TrustedKey::new(&key.public(), "k", vec![Layer::Common]));
    store.write(&layout).unwrap();
    assert_eq!(TrustStore::read(&layout).unwrap(), store);
    fs::write(layout.trust_store(), b"{\"keys\": 7}").unwrap();
    let err = TrustStore::read(&layout).unwrap_err();
    assert!(
        matches!(&err, TrustError::Format { path, .. } if path == &layout.trust_store()),
        "{err:?}"
    );
}

#[test]
fn small_files_are_read_only_up_to_their_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.minisig");
    fs::write(&big, vec![b'a'; 5000]).unwrap();
    assert_eq!(read_bounded(&big, 5000).unwrap().len(), 5000);
    let err = read_bounded(&big, 4999).unwrap_err();
    assert!(
        matches!(&err, TrustError::Format { path, rule } if path == &big && rule.to_string().contains("larger than")),
        "{err:?}"
    );
    let err = read_signature(&big).unwrap_err();
    assert!(matches!(err, TrustError::Format { .. }), "{err:?}");
}

#[test]
fn comments_must_be_single_short_lines() {
    let key = SecretKey::generate().unwrap();
    let d = Blake2b512Digest::of_bytes(b"x");
    assert!(matches!(
        key.sign(&d, "two\nlines", "ok"),
        Err(TrustError::MultiLine { .. })
    ));
    assert!(matches!(
        key.sign(&d, "ok", &"x".repeat(100_000)),
        Err(TrustError::CommentTooLong)
    ));
}
