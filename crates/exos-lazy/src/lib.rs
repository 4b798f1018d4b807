//! # exos-lazy — packages mounted before they are downloaded
//!
//! `exos install --lazy` records where a package is instead of fetching
//! it: a [`LazyRecord`] (repository, URL, size, SHA-256) and the package's
//! [`BlockMap`](exos_repo::BlockMap) (the SHA-256 of every 64 KiB block,
//! checked against the signed index), both under
//! `ROOT/system/state/lazy/`. packagefs opens such a package through a
//! [`RemoteSource`]: every read is served from verified blocks, fetched
//! with HTTP Range requests when first needed (a run of missing blocks per
//! request, growing while a reader goes forward), and kept in a
//! [`BlockCache`] shared by every mount of the machine. A package whose
//! blocks are all cached works offline.
//!
//! Invariant: no byte reaches a reader unless the block holding it hashed
//! to what the block map says — fetched or read back from the cache — and
//! the block map is the one the signed index named.

#![forbid(unsafe_code)]

pub mod cache;
pub mod record;
pub mod source;

use std::path::PathBuf;

pub use cache::BlockCache;
pub use record::{LazyPackage, LazyRecord};
pub use source::{RemoteSource, SourceStats};

/// Why a lazy record or its block map could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    /// Reading or writing a record or block map failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The record or block map.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A record broke a rule.
    #[error("{file}: {rule}")]
    Invalid {
        /// The record.
        file: String,
        /// The rule, in words.
        rule: String,
    },
    /// A record is not JSON of the expected shape.
    #[error("{file}: {source}")]
    Json {
        /// The record.
        file: String,
        /// Where and how it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The record's repository location or block map was refused.
    #[error(transparent)]
    Repo(#[from] exos_repo::RepoError),
}

impl LazyError {
    fn invalid(file: impl std::fmt::Display, rule: impl Into<String>) -> LazyError {
        LazyError::Invalid {
            file: file.to_string(),
            rule: rule.into(),
        }
    }
}
