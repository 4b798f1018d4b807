//! # exos-hpkg — Haiku's HPKG v2 and HPKR v2 formats
//!
//! This crate reads and writes the package format EXOS mounts: Haiku's
//! HPKG v2 (`*.hpkg`) and the HPKR v2 repository index. It knows nothing of
//! command lines, mounting or package-manager policy.
//!
//! * Reading is random-access: [`Package::open`] validates the header, loads
//!   the chunk-size table and parses the TOC and package attributes into a
//!   compact index; [`Package::read_at`] decompresses only the 64 KiB chunks a
//!   read touches. The whole heap is never loaded.
//! * Writing is streaming and deterministic: [`PackageBuilder`] compresses
//!   chunks on all cores while entries are added, with memory bounded
//!   independently of the package size; [`build_from_dir`] packs a directory.
//! * Every input is untrusted: sizes are checked before allocation, sections
//!   are capped, decompression cannot exceed a chunk's declared size, and
//!   errors name the file and the rule that was broken.
//!
//! Module map: [`header`] (fixed headers) → [`heap`] (chunks) → [`attr`]
//! (tagged attribute stream) → [`toc`] (file tree) and [`info`] (package
//! metadata) → [`package`] (reader) / [`writer`] (builder) / [`repo`] (HPKR).

#![forbid(unsafe_code)]

pub mod attr;
mod bmessage;
pub mod budget;
pub mod crypt;
pub mod error;
pub mod header;
pub mod heap;
pub mod info;
pub mod package;
pub mod repo;
pub mod repo_writer;
pub mod source;
pub mod toc;
pub mod tree;
pub mod writer;

pub use error::{Error, ErrorKind, Result};
pub use header::{Compression, PackageHeader, RepoHeader};
pub use info::{Architecture, Operator, PackageInfo, Provides, Resolvable, Version, VersionRef};
pub use package::{OpenOptions, Package};
pub use repo::{Repository, RepositoryInfo};
pub use source::Source;
pub use toc::{DataRef, Entry, EntryId, EntryKind, Timestamp, Toc};
pub use tree::build_from_dir;
pub use writer::{
    compress_chunk, repack, BuildOptions, BuildStats, ChunkCoding, EntryMeta, FileData,
    PackageBuilder,
};

/// Which kind of file a path holds, by magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An HPKG package.
    Package,
    /// An HPKR repository index.
    Repository,
}

/// Sniffs the first four bytes of a file.
pub fn detect(path: impl AsRef<std::path::Path>) -> Result<FileKind> {
    use std::io::Read;
    let path = path.as_ref();
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| Error::from(e).with_path(path))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| Error::from(e).with_path(path))?;
    if crypt::is_encrypted(&magic[..n]) {
        return Ok(FileKind::Package);
    }
    let n = n.min(4);
    match &magic[..n] {
        b"hpkg" => Ok(FileKind::Package),
        b"hpkr" => Ok(FileKind::Repository),
        _ => {
            let mut m = [0u8; 4];
            m[..n].copy_from_slice(&magic[..n]);
            Err(Error::from(ErrorKind::BadMagic(m)).with_path(path))
        }
    }
}
