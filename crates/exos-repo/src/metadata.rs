//! The signed documents of a repository, modelled on TUF's roles:
//!
//! * `root.json` — which keys sign the other two (and future roots);
//!   pinned by the client when the repository is added.
//! * `index.json` — every package, bound by file name, size and SHA-256,
//!   with its manifest; a version that only grows; an expiry date.
//! * `timestamp.json` — the current index's version, size and SHA-256; a
//!   version that only grows; a short expiry (a day by default), re-signed
//!   by `exos repo refresh-timestamp`, so a mirror that keeps serving old
//!   metadata (a freeze) is noticed within a day.
//!
//! Each is served as `NAME.json` with a minisign signature `NAME.json.minisig`
//! over its exact bytes, by a key the root lists for that role.

use exos_root::Sha256;
use exos_trust::{Blake2b512Digest, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};

use crate::RepoError;

/// Largest `root.json` or `timestamp.json` fetched.
pub const MAX_SMALL_DOC: u64 = 64 * 1024;
/// Largest `index.json` fetched when no timestamp gives its size.
pub const MAX_INDEX: u64 = 256 << 20;

/// The roles whose keys a root names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `root.json`: which keys sign which role.
    Root,
    /// `index.json`: the packages.
    Index,
    /// `timestamp.json`: which index is current.
    Timestamp,
}

impl Role {
    /// The role's document file name.
    pub fn file(self) -> &'static str {
        match self {
            Role::Root => "root.json",
            Role::Index => "index.json",
            Role::Timestamp => "timestamp.json",
        }
    }
}

/// Public keys (minisign's base64 line) per role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// Keys that sign `root.json` (and its successors).
    pub root: Vec<String>,
    /// Keys that sign `index.json`.
    pub index: Vec<String>,
    /// Keys that sign `timestamp.json`.
    pub timestamp: Vec<String>,
}

impl RoleKeys {
    /// The keys of `role`.
    pub fn of(&self, role: Role) -> &[String] {
        match role {
            Role::Root => &self.root,
            Role::Index => &self.index,
            Role::Timestamp => &self.timestamp,
        }
    }
}

/// `root.json`: the keys of each role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDoc {
    /// Always `"exos-root"`: a document signed for one role cannot be
    /// replayed as another.
    #[serde(rename = "type")]
    pub kind: String,
    /// Goes up by one at each key change.
    pub version: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    /// The keys of each role.
    pub keys: RoleKeys,
}

/// `index.json`: every package the repository offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDoc {
    /// Always `"exos-index"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Goes up at each publication; never down.
    pub version: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    /// The packages.
    pub packages: Vec<IndexEntry>,
}

/// One package of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// File name in the repository (no directories).
    pub file: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Sha256,
    /// Whether `FILE.minisig` (a package signature for trust policies) is
    /// published beside it.
    pub signed: bool,
    /// The package's manifest.json (canonical form).
    pub manifest: serde_json::Value,
    /// Its block map (`FILE.blocks`), for lazy mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<crate::blocks::BlockMapRef>,
    /// Where its TOC, attributes and chunk table start (to the end of the
    /// file): what a lazy install fetches, with the header, in one go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_offset: Option<u64>,
    /// Deltas (`exos delta`) that rebuild this package from older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<DeltaRef>,
}

/// A published delta: the package it applies to and the file itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaRef {
    /// SHA-256 of the old package it applies to.
    pub from: Sha256,
    /// File name in the repository (no directories).
    pub file: String,
    /// The delta's size.
    pub size: u64,
    /// The delta's SHA-256.
    pub sha256: Sha256,
}

/// `timestamp.json`: which index is current, re-signed often so a frozen mirror is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampDoc {
    /// Always `"exos-timestamp"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Goes up at each signing; never down.
    pub version: u64,
    /// Seconds since the epoch (short: a day by default).
    pub expires: u64,
    /// The current index.
    pub index: DocRef,
}

/// Another document, bound by version, size and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocRef {
    /// The document's version.
    pub version: u64,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Sha256,
}

/// `root.json`'s `type`.
pub const ROOT_TYPE: &str = "exos-root";
/// `index.json`'s `type`.
pub const INDEX_TYPE: &str = "exos-index";
/// `timestamp.json`'s `type`.
pub const TIMESTAMP_TYPE: &str = "exos-timestamp";

/// Parses a document and checks its type tag.
pub fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    file: &str,
    kind: &str,
    get_kind: impl Fn(&T) -> &str,
) -> Result<T, RepoError> {
    let doc: T = serde_json::from_slice(bytes).map_err(|source| RepoError::Json {
        file: file.to_string(),
        source,
    })?;
    if get_kind(&doc) != kind {
        return Err(RepoError::invalid(
            file,
            format!("a {:?} document where {kind:?} is expected", get_kind(&doc)),
        ));
    }
    Ok(doc)
}

/// Parses `root.json` (every role has a key, every key parses); `file` names it in errors.
pub fn parse_root(bytes: &[u8], file: &str) -> Result<RootDoc, RepoError> {
    let r: RootDoc = parse(bytes, file, ROOT_TYPE, |d: &RootDoc| &d.kind)?;
    for role in [Role::Root, Role::Index, Role::Timestamp] {
        if r.keys.of(role).is_empty() {
            return Err(RepoError::invalid(
                file,
                format!("no key for the {role:?} role"),
            ));
        }
        for k in r.keys.of(role) {
            PublicKey::parse(k.as_bytes())
                .map_err(|e| RepoError::invalid(file, format!("{role:?} key: {e}")))?;
        }
    }
    Ok(r)
}

/// Parses `index.json` (package file names are plain `.hpkg` names); `file` names it in errors.
pub fn parse_index(bytes: &[u8], file: &str) -> Result<IndexDoc, RepoError> {
    let idx: IndexDoc = parse(bytes, file, INDEX_TYPE, |d: &IndexDoc| &d.kind)?;
    for p in &idx.packages {
        if p.file.is_empty()
            || p.file.contains(['/', '\\', '\0'])
            || p.file.starts_with('.')
            || !p.file.ends_with(".hpkg")
        {
            return Err(RepoError::invalid(
                file,
                format!(
                    "package file name {:?} (one name ending in .hpkg, no directories)",
                    p.file
                ),
            ));
        }
    }
    Ok(idx)
}

/// Parses `timestamp.json`; `file` names it in errors.
pub fn parse_timestamp(bytes: &[u8], file: &str) -> Result<TimestampDoc, RepoError> {
    parse(bytes, file, TIMESTAMP_TYPE, |d: &TimestampDoc| &d.kind)
}

/// Checks that `sig` (a `.minisig`'s text) is a signature of `bytes` by one
/// of `keys`.
pub fn check_signature(
    bytes: &[u8],
    sig: &[u8],
    keys: &[String],
    file: &str,
) -> Result<(), RepoError> {
    let sig = Signature::parse(sig)
        .map_err(|e| RepoError::invalid(format!("{file}.minisig"), e.to_string()))?;
    let digest = Blake2b512Digest::of_bytes(bytes);
    let trusted: Vec<String> = keys
        .iter()
        .filter_map(|k| PublicKey::parse(k.as_bytes()).ok())
        .map(|k| k.id.to_string())
        .collect();
    let mut last = format!(
        "signed by key {}, but the key{} trusted for it {} {} (a root.json is checked against the root key pinned by `repo add -k`, the other documents against the keys the root lists for their role)",
        sig.id,
        if trusted.len() == 1 { "" } else { "s" },
        if trusted.len() == 1 { "is" } else { "are" },
        if trusted.is_empty() {
            "none".to_string()
        } else {
            trusted.join(", ")
        }
    );
    for k in keys {
        let Ok(key) = PublicKey::parse(k.as_bytes()) else {
            continue;
        };
        if key.id != sig.id {
            continue;
        }
        match key.verify(&sig, &digest) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(RepoError::untrusted(file, last))
}

/// Serialises a document and signs it: (json bytes, signature text).
pub fn sign_doc<T: Serialize>(
    doc: &T,
    key: &SecretKey,
    file: &str,
) -> Result<(Vec<u8>, String), RepoError> {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("serialisable");
    bytes.push(b'\n');
    let sig = key
        .sign(
            &Blake2b512Digest::of_bytes(&bytes),
            &format!("signature from exos repository key {}", key.id),
            &format!("file:{file}"),
        )
        .map_err(|e| RepoError::invalid(file, e.to_string()))?;
    Ok((bytes, sig.render()))
}
