//! What a root keeps for a lazily installed package.

use std::path::{Path, PathBuf};

use exos_repo::BlockMap;

use crate::LazyError;
use exos_root::{write_atomically, Layout, Sha256};
use serde::{Deserialize, Serialize};

/// Largest record accepted (they are a few hundred bytes).
pub const MAX_RECORD: u64 = 16 * 1024;

/// `system/state/lazy/<sha>.lazy`: where a lazily installed package is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazyRecord {
    /// The repository it was installed from (for messages).
    pub repository: String,
    /// The repository's location (`http(s)://…`, `file://…` or a path).
    pub base: String,
    /// The package's file name in the repository.
    pub file: String,
    /// The package's size in bytes.
    pub size: u64,
    /// The package's SHA-256 (what the state names it by).
    pub sha256: Sha256,
    /// Where its TOC, attributes and chunk table start: fetched with the
    /// header before the package is opened (a hint; every block is still
    /// verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_offset: Option<u64>,
    /// Its manifest as the signed index gave it (checked at install
    /// against the package's own), so resolving never fetches a package.
    pub manifest: serde_json::Value,
}

impl LazyRecord {
    /// The record of installing `p` lazily. A repository in a directory is
    /// recorded by its absolute path (the mount daemon works from `/`).
    pub fn of_offered(p: &exos_repo::OfferedPackage) -> LazyRecord {
        let base = match exos_repo::Location::parse(&p.url) {
            Ok(exos_repo::Location::Dir(dir)) => std::fs::canonicalize(&dir)
                .unwrap_or(dir)
                .display()
                .to_string(),
            Ok(exos_repo::Location::Http(u)) => u,
            Err(_) => p.url.clone(),
        };
        LazyRecord {
            repository: p.origin.repository.clone(),
            base,
            file: p.file().to_string(),
            size: p.size(),
            sha256: p.sha256(),
            manifest: p.manifest.to_json(),
            metadata_offset: p.entry.metadata_offset,
        }
    }

    /// Parses a record (at most [`MAX_RECORD`] bytes); `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<LazyRecord, LazyError> {
        if bytes.len() as u64 > MAX_RECORD {
            return Err(LazyError::invalid(
                what,
                format!("{} bytes, over the {MAX_RECORD}-byte limit", bytes.len()),
            ));
        }
        let r: LazyRecord = serde_json::from_slice(bytes).map_err(|source| LazyError::Json {
            file: what.to_string(),
            source,
        })?;
        if r.file.is_empty() || r.file.contains('/') || r.file.starts_with('.') {
            return Err(LazyError::invalid(
                what,
                format!("file {:?} is not a plain file name", r.file),
            ));
        }
        exos_repo::Location::parse(&r.base).map_err(|e| LazyError::invalid(what, e.to_string()))?;
        Ok(r)
    }
}

/// A lazily installed package as a root keeps it: its record and block map.
#[derive(Debug, Clone)]
pub struct LazyPackage {
    /// Where the package is.
    pub record: LazyRecord,
    /// The hash of every block, as the signed index bound it.
    pub blocks: BlockMap,
    /// The record's path, for messages.
    pub path: PathBuf,
}

fn io(p: &Path, source: std::io::Error) -> LazyError {
    LazyError::Io {
        path: p.to_path_buf(),
        source,
    }
}

impl LazyPackage {
    /// Reads the record and block map kept for `sha`; `Ok(None)` when the
    /// root keeps no lazy record for it.
    pub fn read(layout: &Layout, sha: &Sha256) -> Result<Option<LazyPackage>, LazyError> {
        let path = layout.lazy_record(sha);
        let bytes = match read_capped(&path, MAX_RECORD) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let what = path.display().to_string();
        let record = LazyRecord::parse(&bytes, &what)?;
        if &record.sha256 != sha {
            return Err(LazyError::invalid(
                what,
                format!("describes {}, not the package its name says", record.sha256),
            ));
        }
        let bp = layout.lazy_blocks(sha);
        let limit = exos_repo::blocks::map_len(record.size, exos_repo::blocks::MIN_BLOCK_SIZE);
        let bytes = read_capped(&bp, limit).map_err(|e| io(&bp, e))?;
        let blocks = BlockMap::parse(&bytes, &bp.display().to_string(), record.size)?;
        Ok(Some(LazyPackage {
            record,
            blocks,
            path,
        }))
    }

    /// Writes the block map, then the record (the record's presence means
    /// the pair is whole; each written atomically and synced).
    pub fn write(&self, layout: &Layout) -> Result<(), LazyError> {
        let dir = layout.lazy_dir();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let bp = layout.lazy_blocks(&self.record.sha256);
        write_atomically(&bp, &self.blocks.render()).map_err(|e| io(&bp, e))?;
        let rp = layout.lazy_record(&self.record.sha256);
        let text = serde_json::to_vec_pretty(&self.record).map_err(|source| LazyError::Json {
            file: rp.display().to_string(),
            source,
        })?;
        write_atomically(&rp, &text).map_err(|e| io(&rp, e))
    }
}

/// Reads a whole file, refusing one longer than `max` bytes (without
/// allocating more than `max + 1`).
fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "longer than the {max} bytes allowed"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sha: &Sha256) -> String {
        format!(
            r#"{{"repository":"main","base":"http://127.0.0.1:1","file":"a_1%3a2+b1.hpkg","size":20000,"sha256":"{sha}","manifest":{{"name":"a","version":"2"}}}}"#
        )
    }

    #[test]
    fn crafted_records_and_block_maps_are_refused_by_name_and_rule() {
        let sha = Sha256::of_bytes(b"package");
        assert!(LazyRecord::parse(record(&sha).as_bytes(), "r").is_ok());
        let bad = |text: String, rule: &str| {
            let e = LazyRecord::parse(text.as_bytes(), "x.lazy")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("x.lazy: ") && e.contains(rule), "{e}");
        };
        bad(
            record(&sha).replace("a_1%3a2+b1.hpkg", "../etc/passwd"),
            "not a plain file name",
        );
        bad(
            record(&sha).replace("a_1%3a2+b1.hpkg", ".hidden"),
            "not a plain file name",
        );
        bad(
            record(&sha).replace("http://127.0.0.1:1", "gopher://x"),
            "unsupported URL",
        );
        bad(
            record(&sha).replace("\"size\"", "\"extra\":1,\"size\""),
            "unknown field",
        );
        bad(
            format!("{:width$}", "", width = MAX_RECORD as usize + 1),
            "limit",
        );

        // A root keeps the record under its package's hash: another hash,
        // or a block map for another size, is refused.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let pkg = dir.path().join("pkg");
        std::fs::write(&pkg, vec![7u8; 20000]).unwrap();
        let blocks = BlockMap::of_file(&pkg, 4096).unwrap();
        let lazy = LazyPackage {
            record: LazyRecord::parse(record(&sha).as_bytes(), "r").unwrap(),
            blocks: blocks.clone(),
            path: layout.lazy_record(&sha),
        };
        lazy.write(&layout).unwrap();
        let back = LazyPackage::read(&layout, &sha).unwrap().unwrap();
        assert_eq!(back.blocks, blocks);
        let other = Sha256::of_bytes(b"other");
        std::fs::copy(layout.lazy_record(&sha), layout.lazy_record(&other)).unwrap();
        std::fs::copy(layout.lazy_blocks(&sha), layout.lazy_blocks(&other)).unwrap();
        let e = LazyPackage::read(&layout, &other).unwrap_err().to_string();
        assert!(e.contains("not the package its name says"), "{e}");
        let small = dir.path().join("small");
        std::fs::write(&small, vec![7u8; 100]).unwrap();
        std::fs::write(
            layout.lazy_blocks(&sha),
            BlockMap::of_file(&small, 4096).unwrap().render(),
        )
        .unwrap();
        let e = LazyPackage::read(&layout, &sha).unwrap_err().to_string();
        assert!(e.contains("the index says 20000"), "{e}");
        assert!(LazyPackage::read(&layout, &Sha256::of_bytes(b"none"))
            .unwrap()
            .is_none());
    }
}
