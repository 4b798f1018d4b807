//! minisign's key and signature files: one parser and one writer for each.
//!
//! A signature is ed25519 over the BLAKE2b-512 digest of the file ("ED",
//! minisign's prehashed mode, so a file of any size is signed and checked
//! in one streaming pass) plus a "global" signature over the signature and
//! its trusted comment. Files written here are read by `minisign -V`, and
//! keys made by `minisign -G -W` sign here. Secret keys are stored
//! unencrypted (like `minisign -W` or `ssh-keygen -N ''`), protected by
//! their file mode; encrypted minisign keys are refused with that reason.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::{Blake2b512Digest, FormatRule, SignatureError, TrustError};

const UNTRUSTED: &str = "untrusted comment: ";
const TRUSTED: &str = "trusted comment: ";
/// minisign's limits on comment lengths.
const COMMENT_MAX: usize = 1024;
const TRUSTED_COMMENT_MAX: usize = 8192;
/// Largest key or signature file read: comments at their limits plus the
/// base64 lines.
pub const MAX_FILE: usize = 16 * 1024;

/// The 8-byte key number minisign puts in keys and signatures; shown as
/// minisign shows it (the little-endian number in upper-case hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = FormatRule;
    fn from_str(s: &str) -> Result<KeyId, FormatRule> {
        if s.len() != 16 {
            return Err(FormatRule::new(format!(
                "a key id is 16 hex digits, not {s:?}"
            )));
        }
        u64::from_str_radix(s, 16)
            .map(|n| KeyId(n.to_le_bytes()))
            .map_err(|_| FormatRule::new(format!("a key id is 16 hex digits, not {s:?}")))
    }
}

/// A public key: its id and the ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id (minisign's, printed as 16 hex digits).
    pub id: KeyId,
    /// The ed25519 key.
    pub key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// A secret key with its public half.
pub struct SecretKey {
    /// The key id, shared with the public half.
    pub id: KeyId,
    key: SigningKey,
}

/// Never prints the key itself.
impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// A parsed signature file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The id of the key that made it.
    pub id: KeyId,
    /// Over the file's BLAKE2b-512 digest ("ED") or, for minisign's legacy
    /// "Ed" signatures, over the file itself.
    pub prehashed: bool,
    /// The ed25519 signature.
    pub signature: [u8; 64],
    /// The comment line not covered by any signature.
    pub untrusted_comment: String,
    /// Covered by `global_signature`: minisign puts the time and file name
    /// here, exos adds the package's name and version.
    pub trusted_comment: String,
    /// The signature over `signature` followed by `trusted_comment`.
    pub global_signature: [u8; 64],
}

/// Splits a key or signature file into its lines, bounded and checked.
fn lines<'a>(text: &'a [u8], what: &str, count: usize) -> Result<Vec<&'a str>, FormatRule> {
    if text.len() > MAX_FILE {
        return Err(FormatRule::new(format!(
            "{what} is {} bytes; at most {MAX_FILE} are read",
            text.len()
        )));
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| FormatRule::new(format!("{what} is not UTF-8 text")))?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != count {
        return Err(FormatRule::new(format!(
            "{what} has {} non-empty lines; minisign's format has {count}",
            lines.len()
        )));
    }
    Ok(lines)
}

fn comment<'a>(line: &'a str, prefix: &str, max: usize, what: &str) -> Result<&'a str, FormatRule> {
    let c = line
        .strip_prefix(prefix)
        .ok_or_else(|| FormatRule::new(format!("{what}: a line must start with {prefix:?}")))?;
    if c.len() > max {
        return Err(FormatRule::new(format!(
            "{what}: comment of {} bytes, at most {max}",
            c.len()
        )));
    }
    if c.chars().any(|ch| ch.is_control() && ch != '\t') {
        return Err(FormatRule::new(format!(
            "{what}: control characters in a comment"
        )));
    }
    Ok(c)
}

fn decode<const N: usize>(line: &str, what: &str) -> Result<[u8; N], FormatRule> {
    // base64 of N bytes is at most 4 * ceil(N / 3) characters: refuse
    // longer lines before decoding anything.
    if line.len() > N.div_ceil(3) * 4 {
        return Err(FormatRule::new(format!(
            "{what}: the base64 line is too long"
        )));
    }
    let bytes = B64
        .decode(line.trim())
        .map_err(|e| FormatRule::new(format!("{what}: bad base64 ({e})")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        FormatRule::new(format!("{what}: {} bytes where {N} are expected", b.len()))
    })
}

fn single_line(s: &str, what: &str) -> Result<(), TrustError> {
    if s.contains(['\n', '\r']) {
        return Err(TrustError::MultiLine {
            what: what.to_string(),
        });
    }
    Ok(())
}

impl PublicKey {
    /// Parses a public key file (`untrusted comment` line, base64 line), or
    /// the base64 line alone as minisign's `-P` takes it.
    pub fn parse(text: &[u8]) -> Result<PublicKey, FormatRule> {
        let trimmed = std::str::from_utf8(text)
            .map(str::trim)
            .map_err(|_| "the public key is not UTF-8 text".to_string())?;
        let line = if trimmed.contains('\n') {
            let l = lines(text, "the public key file", 2)?;
            comment(l[0], UNTRUSTED, COMMENT_MAX, "the public key file")?;
            l[1]
        } else {
            trimmed
        };
        let raw: [u8; 42] = decode(line, "the public key")?;
        if &raw[..2] != b"Ed" {
            return Err(FormatRule::new(
                "the public key is not an Ed25519 minisign key",
            ));
        }
        let key = VerifyingKey::from_bytes(raw[10..].try_into().expect("32 bytes"))
            .map_err(|_| "the public key is not a valid Ed25519 point".to_string())?;
        if key.is_weak() {
            // A small-order point: signatures under it prove nothing.
            return Err(FormatRule::new(
                "the public key is a weak (small-order) Ed25519 point",
            ));
        }
        Ok(PublicKey {
            id: KeyId(raw[2..10].try_into().expect("8 bytes")),
            key,
        })
    }

    /// The base64 line alone (what `minisign -P` takes).
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(b"Ed");
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// The public key file.
    pub fn render(&self) -> String {
        format!(
            "{UNTRUSTED}minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// Checks a signature of a file with this key: the key ids match, the
    /// signature covers the digest, and the global signature covers the
    /// signature and the trusted comment.
    pub fn verify(&self, sig: &Signature, digest: &Blake2b512Digest) -> Result<(), SignatureError> {
        if sig.id != self.id {
            return Err(SignatureError::OtherKey {
                signed_by: sig.id,
                key: self.id,
            });
        }
        if !sig.prehashed {
            return Err(SignatureError::Legacy);
        }
        let s = ed25519_dalek::Signature::from_bytes(&sig.signature);
        self.key
            .verify_strict(&digest.0, &s)
            .map_err(|_| SignatureError::Contents)?;
        let mut global = Vec::with_capacity(64 + sig.trusted_comment.len());
        global.extend_from_slice(&sig.signature);
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        let g = ed25519_dalek::Signature::from_bytes(&sig.global_signature);
        self.key
            .verify_strict(&global, &g)
            .map_err(|_| SignatureError::TrustedComment)
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, TrustError> {
        let mut seed = [0u8; 32];
        let mut id = [0u8; 8];
        getrandom::fill(&mut seed)
            .and_then(|_| getrandom::fill(&mut id))
            .map_err(|e| TrustError::Random(e.to_string()))?;
        Ok(SecretKey {
            id: KeyId(id),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Parses an unencrypted minisign secret key file.
    pub fn parse(text: &[u8]) -> Result<SecretKey, FormatRule> {
        let l = lines(text, "the secret key file", 2)?;
        comment(l[0], UNTRUSTED, COMMENT_MAX, "the secret key file")?;
        let raw: [u8; 158] = decode(l[1], "the secret key")?;
        if &raw[..2] != b"Ed" || &raw[4..6] != b"B2" {
            return Err(FormatRule::new(
                "the secret key is not an Ed25519 minisign key",
            ));
        }
        match &raw[2..4] {
            [0, 0] => {}
            b"Sc" => {
                return Err(
                    "the secret key is encrypted with a password; exos reads unencrypted keys (make one with `exos key generate` or `minisign -G -W`)"
                        .into(),
                )
            }
            _ => return Err(FormatRule::new("the secret key uses an unknown key derivation")),
        }
        let keynum = &raw[54..];
        let id: [u8; 8] = keynum[..8].try_into().expect("8 bytes");
        let sk: [u8; 64] = keynum[8..72].try_into().expect("64 bytes");
        let chk = &keynum[72..104];
        // minisign 0.11 leaves the checksum of an unencrypted key (`-W`)
        // all zeros; the pairing check below still catches damage there.
        if chk != [0; 32] && checksum(&id, &sk) != chk {
            return Err(FormatRule::new(
                "the secret key's checksum does not match (damaged file)",
            ));
        }
        let key = SigningKey::from_keypair_bytes(&sk)
            .map_err(|_| "the secret key's halves do not belong together".to_string())?;
        Ok(SecretKey { id: KeyId(id), key })
    }

    /// The unencrypted secret key file.
    pub fn render(&self) -> String {
        let sk = self.key.to_keypair_bytes();
        let mut raw = Vec::with_capacity(158);
        raw.extend_from_slice(b"Ed");
        raw.extend_from_slice(&[0, 0]);
        raw.extend_from_slice(b"B2");
        raw.extend_from_slice(&[0; 32 + 8 + 8]);
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(&sk);
        raw.extend_from_slice(&checksum(&self.id.0, &sk));
        format!(
            "{UNTRUSTED}minisign secret key {} (unencrypted, written by exos)\n{}\n",
            self.id,
            B64.encode(raw)
        )
    }

    /// Signs a file's digest; both comments must be single lines.
    pub fn sign(
        &self,
        digest: &Blake2b512Digest,
        untrusted_comment: &str,
        trusted_comment: &str,
    ) -> Result<Signature, TrustError> {
        single_line(untrusted_comment, "the untrusted comment")?;
        single_line(trusted_comment, "the trusted comment")?;
        if untrusted_comment.len() > COMMENT_MAX || trusted_comment.len() > TRUSTED_COMMENT_MAX {
            return Err(TrustError::CommentTooLong);
        }
        let signature = self.key.sign(&digest.0).to_bytes();
        let mut global = Vec::with_capacity(64 + trusted_comment.len());
        global.extend_from_slice(&signature);
        global.extend_from_slice(trusted_comment.as_bytes());
        Ok(Signature {
            id: self.id,
            prehashed: true,
            signature,
            untrusted_comment: untrusted_comment.to_string(),
            trusted_comment: trusted_comment.to_string(),
            global_signature: self.key.sign(&global).to_bytes(),
        })
    }
}

/// minisign's secret-key checksum: BLAKE2b-256 of "Ed", the key id and the
/// 64-byte secret key.
fn checksum(id: &[u8; 8], sk: &[u8; 64]) -> [u8; 32] {
    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};
    let mut h = Blake2b::<U32>::new();
    h.update(b"Ed");
    h.update(id);
    h.update(sk);
    h.finalize().into()
}

impl Signature {
    /// Parses a `.minisig` file.
    pub fn parse(text: &[u8]) -> Result<Signature, FormatRule> {
        let what = "the signature file";
        let l = lines(text, what, 4)?;
        let untrusted = comment(l[0], UNTRUSTED, COMMENT_MAX, what)?;
        let raw: [u8; 74] = decode(l[1], what)?;
        let prehashed = match &raw[..2] {
            b"ED" => true,
            b"Ed" => false,
            _ => {
                return Err(FormatRule::new(format!(
                    "{what}: not an Ed25519 minisign signature"
                )))
            }
        };
        let trusted = comment(l[2], TRUSTED, TRUSTED_COMMENT_MAX, what)?;
        let global: [u8; 64] = decode(l[3], what)?;
        Ok(Signature {
            id: KeyId(raw[2..10].try_into().expect("8 bytes")),
            prehashed,
            signature: raw[10..].try_into().expect("64 bytes"),
            untrusted_comment: untrusted.to_string(),
            trusted_comment: trusted.to_string(),
            global_signature: global,
        })
    }

    /// The signature file's text, as minisign writes it.
    pub fn render(&self) -> String {
        let mut raw = Vec::with_capacity(74);
        raw.extend_from_slice(if self.prehashed { b"ED" } else { b"Ed" });
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(&self.signature);
        format!(
            "{UNTRUSTED}{}\n{}\n{TRUSTED}{}\n{}\n",
            self.untrusted_comment,
            B64.encode(raw),
            self.trusted_comment,
            B64.encode(self.global_signature)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_signatures_round_trip_and_verify() {
        let sk = SecretKey::generate().unwrap();
        let again = SecretKey::parse(sk.render().as_bytes()).unwrap();
        assert_eq!(again.public(), sk.public());
        let pk = PublicKey::parse(sk.public().render().as_bytes()).unwrap();
        assert_eq!(PublicKey::parse(pk.to_base64().as_bytes()).unwrap(), pk);
        let d = Blake2b512Digest::of_bytes(b"package bytes");
        let sig = sk
            .sign(&d, "signature from exos", "timestamp:1\tfile:a.hpkg")
            .unwrap();
        let parsed = Signature::parse(sig.render().as_bytes()).unwrap();
        assert_eq!(parsed, sig);
        pk.verify(&parsed, &d).unwrap();
        // Another file, another comment, another key: all refused.
        let other = Blake2b512Digest::of_bytes(b"package bytez");
        assert!(pk.verify(&parsed, &other).is_err());
        let mut altered = parsed.clone();
        altered.trusted_comment.push('x');
        assert!(pk
            .verify(&altered, &d)
            .unwrap_err()
            .to_string()
            .contains("trusted comment"));
        let stranger = SecretKey::generate().unwrap().public();
        assert!(stranger
            .verify(&parsed, &d)
            .unwrap_err()
            .to_string()
            .contains("signed by key"));
    }

    #[test]
    fn encrypted_and_damaged_keys_are_refused_with_the_reason() {
        let sk = SecretKey::generate().unwrap();
        let text = sk.render();
        let line = text.lines().nth(1).unwrap();
        let mut raw = B64.decode(line).unwrap();
        raw[2..4].copy_from_slice(b"Sc");
        let enc = format!("{UNTRUSTED}x\n{}\n", B64.encode(&raw));
        assert!(SecretKey::parse(enc.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("encrypted"));
        raw[2..4].copy_from_slice(&[0, 0]);
        raw[100] ^= 1;
        let bad = format!("{UNTRUSTED}x\n{}\n", B64.encode(&raw));
        assert!(SecretKey::parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }

    #[test]
    fn key_ids_print_like_minisign() {
        let id = KeyId(0x0123_4567_89AB_CDEFu64.to_le_bytes());
        assert_eq!(id.to_string(), "0123456789ABCDEF");
        assert_eq!("0123456789ABCDEF".parse::<KeyId>().unwrap(), id);
        assert!("0123".parse::<KeyId>().is_err());
    }
}
