//! Parses arbitrary bytes as each of the trust files: a minisign signature,
//! public key and secret key, and a root's trust.json. Whatever parses
//! renders back to text that parses to the same value; a parsed signature
//! is checked against a parsed key (no panic whatever the bytes).
#![no_main]

use exos_trust::{Blake2b512Digest, PublicKey, SecretKey, Signature, TrustStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sig = Signature::parse(data).ok();
    if let Some(s) = &sig {
        assert_eq!(Signature::parse(s.render().as_bytes()).as_ref(), Ok(s));
    }
    if let Ok(k) = PublicKey::parse(data) {
        assert_eq!(PublicKey::parse(k.render().as_bytes()).as_ref(), Ok(&k));
        if let Some(s) = &sig {
            let _ = k.verify(s, &Blake2b512Digest::of_bytes(data));
        }
    }
    if let Ok(k) = SecretKey::parse(data) {
        let again = SecretKey::parse(k.render().as_bytes()).expect("rendered key parses");
        assert_eq!(again.public(), k.public());
    }
    if let Ok(t) = TrustStore::parse(data, "fuzz") {
        assert_eq!(
            TrustStore::parse(t.render().as_bytes(), "fuzz").ok(),
            Some(t)
        );
    }
});
