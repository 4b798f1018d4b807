//! # exos-trust — package signatures and a root's trust store
//!
//! * [`minisign`]: keys and detached signatures in minisign's format
//!   (ed25519 over the file's BLAKE2b-512 digest). A signature is a
//!   separate `.minisig` file, so a signed package stays byte-for-byte the
//!   package Haiku's `package` tool reads, and `minisign -V` checks what
//!   `exos sign` made.
//! * [`TrustStore`]: `ROOT/system/state/trust.json` — the public keys a
//!   root trusts, each for some layers, and per layer whether packages
//!   need a signature by such a key ([`Policy`]).
//! * [`FileDigest`]: SHA-256 (what states record) and BLAKE2b-512 (what
//!   signatures cover) of a file in one read.
//!
//! The manager checks signatures at install and keeps each accepted one
//! under the package's SHA-256 in `ROOT/system/state/signatures/`;
//! packagefs checks them again at activation, so a package copied by hand
//! into a layer that requires signatures is refused with the reason.
//!
//! Invariant: [`TrustStore::check`] accepts a package for a layer only if
//! the layer's policy allows it unsigned, or a key trusted for that layer
//! signed exactly the file's bytes and the signature's trusted comment.

#![forbid(unsafe_code)]

pub mod minisign;

use std::io::Read;
use std::path::{Path, PathBuf};

use exos_root::{Layer, Layout, PerLayer};
pub use minisign::{KeyId, PublicKey, SecretKey, Signature};

/// Largest trust store read.
const MAX_STORE: u64 = 1 << 20;

/// Why a key, signature or trust store file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file broke a rule of its format: the file, then the rule.
    #[error("{}: {rule}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The rule it broke.
        rule: FormatRule,
    },
    /// The operating system gave no random numbers (for a new key).
    #[error("no random numbers: {0}")]
    Random(String),
    /// A comment or name that must fit on one line does not.
    #[error("{what} must be a single line")]
    MultiLine {
        /// What it is (`the trusted comment`).
        what: String,
    },
    /// A comment longer than minisign accepts.
    #[error("a comment is too long")]
    CommentTooLong,
}

impl TrustError {
    fn io(path: &Path, source: std::io::Error) -> TrustError {
        TrustError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn format(path: impl AsRef<Path>, rule: impl Into<FormatRule>) -> TrustError {
        TrustError::Format {
            path: path.as_ref().to_path_buf(),
            rule: rule.into(),
        }
    }
}

/// A rule of a format (minisign's keys and signatures, `trust.json`) that
/// a file broke, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatRule(String);

impl FormatRule {
    /// A rule, in words (`a key id is 16 hex digits, not "x"`).
    pub fn new(rule: impl Into<String>) -> FormatRule {
        FormatRule(rule.into())
    }
}

impl From<String> for FormatRule {
    fn from(s: String) -> FormatRule {
        FormatRule(s)
    }
}

impl From<&str> for FormatRule {
    fn from(s: &str) -> FormatRule {
        FormatRule(s.to_string())
    }
}

/// Why a signature does not admit a package.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The signature's key id is not the key's.
    #[error("signed by key {signed_by}, not by key {key}")]
    OtherKey {
        /// The key id the signature names.
        signed_by: KeyId,
        /// The key it was checked with.
        key: KeyId,
    },
    #[error(
        "a legacy (not prehashed) minisign signature: sign again with `exos sign` or `minisign -S`"
    )]
    /// minisign's legacy signature over the whole file, which exos does not accept.
    Legacy,
    /// The signature is not over these bytes.
    #[error("the signature does not match the file's contents")]
    Contents,
    /// The trusted comment was changed after signing.
    #[error("the trusted comment was altered (global signature mismatch)")]
    TrustedComment,
    /// No key of the trust store has this id.
    #[error("signed by key {0}, which this root does not trust")]
    UntrustedKey(String),
    /// The key is trusted, but not for this layer.
    #[error("signed by key {id} ({name}), which is not trusted for the {layer} layer")]
    WrongLayer {
        /// The key id.
        id: String,
        /// The key's name in the trust store.
        name: String,
        /// The layer asked for.
        layer: Layer,
    },
    /// No signature, in a layer that requires one.
    #[error("unsigned, and the {0} layer takes only packages signed by a trusted key")]
    Unsigned(Layer),
    /// A trusted key of the store could not be used.
    #[error("{0}")]
    BadTrustedKey(FormatRule),
    /// The signature file could not be read.
    #[error(transparent)]
    Unreadable(#[from] TrustError),
}

pub use exos_root::digest::{Blake2b512Digest, FileDigest};

/// Whether a layer takes unsigned packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Any package; a signature is not needed (one that is present is
    /// checked at install and kept if a trusted key made it).
    #[default]
    Any,
    /// Only packages signed by a key trusted for the layer.
    Signed,
}

impl std::str::FromStr for Policy {
    type Err = FormatRule;
    fn from_str(s: &str) -> Result<Policy, FormatRule> {
        match s {
            "any" => Ok(Policy::Any),
            "signed" => Ok(Policy::Signed),
            _ => Err(FormatRule::new(format!(
                "unknown policy {s:?} (any or signed)"
            ))),
        }
    }
}

/// A key the root trusts, and for which layers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// As minisign prints it; must match `public_key`.
    pub id: String,
    /// The base64 line of the public key (minisign's `-P` form).
    pub public_key: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// The layers whose packages this key may sign.
    pub layers: Vec<Layer>,
}

impl TrustedKey {
    /// Trust `key`, named `name`, for `layers`.
    pub fn new(key: &PublicKey, name: &str, layers: Vec<Layer>) -> TrustedKey {
        TrustedKey {
            id: key.id.to_string(),
            public_key: key.to_base64(),
            name: name.to_string(),
            layers,
        }
    }

    /// The public key, checked against the recorded id.
    pub fn key(&self) -> Result<PublicKey, FormatRule> {
        let k = PublicKey::parse(self.public_key.as_bytes())?;
        if k.id.to_string() != self.id {
            return Err(FormatRule::new(format!(
                "key {} holds a public key with id {}",
                self.id, k.id
            )));
        }
        Ok(k)
    }
}

/// `ROOT/system/state/trust.json`. A root without one trusts no key and
/// takes unsigned packages in every layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustStore {
    /// The trusted keys.
    #[serde(default)]
    pub keys: Vec<TrustedKey>,
    /// Each layer's policy.
    #[serde(default)]
    pub policy: PerLayer<Policy>,
}

/// A detached signature beside a file: `FILE.minisig`, as minisign names it.
pub fn beside(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// Reads a small file, refusing one larger than `max` before reading it.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, TrustError> {
    let f = std::fs::File::open(path).map_err(|e| TrustError::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TrustError::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(TrustError::format(
            path,
            format!("larger than the {max} bytes such a file may have"),
        ));
    }
    Ok(bytes)
}

/// Reads and parses a signature file.
pub fn read_signature(path: &Path) -> Result<Signature, TrustError> {
    let bytes = read_bounded(path, minisign::MAX_FILE as u64)?;
    Signature::parse(&bytes).map_err(|e| TrustError::format(path, e))
}

/// Reads and parses a public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, TrustError> {
    let bytes = read_bounded(path, minisign::MAX_FILE as u64)?;
    PublicKey::parse(&bytes).map_err(|e| TrustError::format(path, e))
}

/// Reads and parses a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, TrustError> {
    let bytes = read_bounded(path, minisign::MAX_FILE as u64)?;
    SecretKey::parse(&bytes).map_err(|e| TrustError::format(path, e))
}

impl TrustStore {
    /// Parses a trust store; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<TrustStore, TrustError> {
        let store: TrustStore =
            serde_json::from_slice(bytes).map_err(|e| TrustError::format(file, e.to_string()))?;
        for k in &store.keys {
            k.key()
                .map_err(|e| TrustError::format(file, format!("key {}: {e}", k.id)))?;
        }
        let mut ids: Vec<&str> = store.keys.iter().map(|k| k.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(TrustError::format(
                file,
                format!("key {} is listed twice", w[0]),
            ));
        }
        Ok(store)
    }

    /// The root's trust store; the default one when the file does not exist.
    pub fn read(layout: &Layout) -> Result<TrustStore, TrustError> {
        let path = layout.trust_store();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustStore::default()),
            Err(e) => return Err(TrustError::io(&path, e)),
            Ok(_) => {}
        }
        let bytes = read_bounded(&path, MAX_STORE)?;
        TrustStore::parse(&bytes, &path.display().to_string())
    }

    /// `trust.json` as written: pretty JSON and a newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("serialisable");
        s.push('\n');
        s
    }

    /// Writes the trust store (temp file, fsync, rename).
    pub fn write(&self, layout: &Layout) -> Result<(), TrustError> {
        let path = layout.trust_store();
        exos_root::write_atomically(&path, self.render().as_bytes())
            .map_err(|e| TrustError::io(&path, e))
    }

    /// Whether `layer` takes only signed packages.
    pub fn requires_signature(&self, layer: Layer) -> bool {
        *self.policy.get(layer) == Policy::Signed
    }

    /// Checks a signature of a file (by its digest) for a layer: the key
    /// that made it must be trusted for that layer.
    pub fn check(
        &self,
        layer: Layer,
        sig: &Signature,
        digest: &Blake2b512Digest,
    ) -> Result<&TrustedKey, SignatureError> {
        let id = sig.id.to_string();
        let Some(trusted) = self.keys.iter().find(|k| k.id == id) else {
            return Err(SignatureError::UntrustedKey(id));
        };
        if !trusted.layers.contains(&layer) {
            return Err(SignatureError::WrongLayer {
                id,
                name: trusted.name.clone(),
                layer,
            });
        }
        trusted
            .key()
            .map_err(SignatureError::BadTrustedKey)?
            .verify(sig, digest)?;
        Ok(trusted)
    }

    /// Decides whether a package may be active in (or installed into) a
    /// layer. `signature` is where its signature is, if anywhere.
    pub fn admit(
        &self,
        layer: Layer,
        digest: &FileDigest,
        signature: Option<&Path>,
    ) -> Result<Verdict, SignatureError> {
        let sig = match signature {
            Some(p) => Some(read_signature(p)?),
            None => None,
        };
        match (sig, self.requires_signature(layer)) {
            (None, false) => Ok(Verdict::Unsigned),
            (None, true) => Err(SignatureError::Unsigned(layer)),
            (Some(_), false) => Ok(Verdict::Unsigned),
            (Some(s), true) => self
                .check(layer, &s, &digest.blake2b)
                .map(|k| Verdict::Signed {
                    key: k.id.clone(),
                    name: k.name.clone(),
                }),
        }
    }
}

/// Why a package was admitted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// The layer does not require a signature.
    Unsigned,
    /// Signed by this trusted key.
    Signed {
        /// The key id.
        key: String,
        /// The key's name in the trust store.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(sk: &SecretKey, bytes: &[u8]) -> (FileDigest, Signature) {
        let d = Blake2b512Digest::of_bytes(bytes);
        let sig = sk.sign(&d, "c", "t").unwrap();
        let fd = FileDigest {
            sha256: exos_root::Sha256::of_bytes(bytes),
            blake2b: d,
            size: bytes.len() as u64,
        };
        (fd, sig)
    }

    #[test]
    fn a_layer_takes_only_what_its_policy_and_keys_allow() {
        let dir = tempfile::tempdir().unwrap();
        let sk = SecretKey::generate().unwrap();
        let mut store = TrustStore::default();
        store.policy.system = Policy::Signed;
        store.keys.push(TrustedKey::new(
            &sk.public(),
            "release",
            vec![Layer::System],
        ));
        let (fd, sig) = signed(&sk, b"pkg");
        let p = dir.path().join("a.minisig");
        std::fs::write(&p, sig.render()).unwrap();
        assert!(matches!(
            store.admit(Layer::System, &fd, Some(&p)),
            Ok(Verdict::Signed { .. })
        ));
        assert!(store
            .admit(Layer::System, &fd, None)
            .unwrap_err()
            .to_string()
            .contains("unsigned"));
        assert_eq!(
            store.admit(Layer::User, &fd, None).unwrap(),
            Verdict::Unsigned
        );
        // Trusted, but not for common.
        store.policy.common = Policy::Signed;
        assert!(store
            .admit(Layer::Common, &fd, Some(&p))
            .unwrap_err()
            .to_string()
            .contains("not trusted for the common layer"));
        // Another package under the same signature.
        let (other, _) = signed(&sk, b"pkg2");
        assert!(store
            .admit(Layer::System, &other, Some(&p))
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        // Round trip of the store file.
        let again = TrustStore::parse(store.render().as_bytes(), "t").unwrap();
        assert_eq!(again, store);
    }

    #[test]
    fn a_store_with_a_mislabelled_or_repeated_key_is_refused() {
        let k = SecretKey::generate().unwrap().public();
        let mut store = TrustStore::default();
        let mut t = TrustedKey::new(&k, "x", vec![Layer::System]);
        t.id = "0000000000000000".into();
        store.keys.push(t);
        let e = TrustStore::parse(store.render().as_bytes(), "trust.json").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("trust.json: key 0000000000000000"),
            "{e}"
        );
        store.keys[0] = TrustedKey::new(&k, "x", vec![Layer::System]);
        store.keys.push(store.keys[0].clone());
        let e = TrustStore::parse(store.render().as_bytes(), "trust.json").unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }
}
