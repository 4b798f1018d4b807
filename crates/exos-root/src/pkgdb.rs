//! `system/state/packages.json`: what the root remembers about installed
//! packages outside the numbered states, so that a rollback keeps it —
//! where each installed package file came from (its *origin*: the
//! repository and the root key pinned for it when it was installed), which
//! packages were installed only as dependencies (*automatic*: `exos
//! autoremove` removes them once nothing needs them), and which are *held*
//! (`exos hold`: upgrades leave them alone).
//!
//! ```json
//! {"origins": {"<sha256>": {"repository": "main", "key": "RWQ…"}},
//!  "automatic": ["libfoo"],
//!  "holds": {"hello": ""}}
//! ```
//!
//! One parser ([`PackageDb::parse`]), bounded (4 MiB, 1,000,000 origins,
//! marks and holds), unknown fields refused; written atomically by the
//! package manager.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::{Sha256, StateError};

/// Larger files are refused before parsing.
pub const MAX_FILE: u64 = 4 << 20;
/// At most this many origins (and as many automatic marks, and holds).
pub const MAX_ORIGINS: usize = 1_000_000;
/// Longest package name or hold range kept.
const MAX_NAME: usize = 255;

/// Where a package file came from: a repository, known by its name and
/// the root key pinned for it (`exos repo add`). A repository removed and
/// added again with another key is another origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoOrigin {
    /// The repository's name.
    pub repository: String,
    /// The pinned root key (minisign's base64 public key line).
    pub key: String,
}

impl std::fmt::Display for RepoOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repository)
    }
}

/// Everything the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageDb {
    /// Package files installed from a repository, by SHA-256. Files
    /// installed from a path have none.
    #[serde(default)]
    pub origins: BTreeMap<Sha256, RepoOrigin>,
    /// Names of packages installed only because others needed them.
    /// Packages not listed were asked for (or installed before marks
    /// existed): they stay until removed by name.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub automatic: BTreeSet<String>,
    /// Held packages, by name: upgrades leave them alone. The value is a
    /// version range they may still move within (`<2`), empty for none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub holds: BTreeMap<String, String>,
}

impl PackageDb {
    /// Parses the file's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<PackageDb, StateError> {
        let err = |message: String| StateError {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        if bytes.len() as u64 > MAX_FILE {
            return Err(err(format!(
                "{} bytes, more than the {MAX_FILE} allowed",
                bytes.len()
            )));
        }
        let db: PackageDb = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if db.origins.len() > MAX_ORIGINS {
            return Err(err(format!(
                "{} origins, at most {MAX_ORIGINS}",
                db.origins.len()
            )));
        }
        if db.automatic.len() > MAX_ORIGINS || db.holds.len() > MAX_ORIGINS {
            return Err(err(format!(
                "{} automatic marks and {} holds, at most {MAX_ORIGINS} each",
                db.automatic.len(),
                db.holds.len()
            )));
        }
        let bad_name =
            |n: &str| n.is_empty() || n.len() > MAX_NAME || n.chars().any(|c| c.is_control());
        if let Some(n) = db.automatic.iter().find(|n| bad_name(n)) {
            return Err(err(format!("automatic: package name {n:?}")));
        }
        for (name, range) in &db.holds {
            if bad_name(name) || range.len() > MAX_NAME || range.chars().any(|c| c.is_control()) {
                return Err(err(format!("holds: {name:?} {range:?}")));
            }
        }
        for (sha, o) in &db.origins {
            let name_ok = !o.repository.is_empty()
                && o.repository.len() <= 64
                && o.repository
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !name_ok {
                return Err(err(format!(
                    "origin of {sha}: repository name {:?}",
                    o.repository
                )));
            }
            if o.key.is_empty() || o.key.len() > 128 || !o.key.is_ascii() {
                return Err(err(format!("origin of {sha}: key {:?}", o.key)));
            }
        }
        Ok(db)
    }

    /// Reads `path`; a missing file is an empty database.
    pub fn read(path: &Path) -> Result<PackageDb, StateError> {
        match crate::read_state_file(path, MAX_FILE)? {
            Some(bytes) => PackageDb::parse(&bytes, path),
            None => Ok(PackageDb::default()),
        }
    }

    /// The file's bytes, as written.
    pub fn render(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Where the package file with this SHA-256 came from.
    pub fn origin(&self, sha: &Sha256) -> Option<&RepoOrigin> {
        self.origins.get(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Result<PackageDb, String> {
        PackageDb::parse(s.as_bytes(), Path::new("packages.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip_and_rules() {
        let mut db = PackageDb::default();
        db.origins.insert(
            SHA.parse().unwrap(),
            RepoOrigin {
                repository: "main".into(),
                key: "RWQabc".into(),
            },
        );
        db.automatic.insert("libfoo".into());
        db.holds.insert("hello".into(), "<2".into());
        let text = String::from_utf8(db.render()).unwrap();
        assert_eq!(parse(&text).unwrap(), db);
        assert_eq!(parse("{}").unwrap(), PackageDb::default());
        let cases = [
            (
                format!(r#"{{"origins":{{"{SHA}":{{"repository":"a/b","key":"k"}}}}}}"#),
                "repository name",
            ),
            (
                format!(r#"{{"origins":{{"{SHA}":{{"repository":"a","key":""}}}}}}"#),
                "key",
            ),
            (
                r#"{"origins":{"zz":{"repository":"a","key":"k"}}}"#.to_string(),
                "not a SHA-256",
            ),
            (r#"{"extra":1}"#.to_string(), "unknown field"),
            (r#"{"automatic":[""]}"#.to_string(), "automatic"),
            (r#"{"holds":{"a\u0001":""}}"#.to_string(), "holds"),
            ("[".to_string(), "EOF"),
        ];
        for (text, rule) in cases {
            let e = parse(&text).unwrap_err();
            assert!(
                e.contains(rule) && e.contains("packages.json"),
                "{text}: {e}"
            );
        }
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(5 << 20));
        assert!(parse(&big).unwrap_err().contains("more than"));
    }
}
