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

pub use cache::BlockCache;
pub use record::{LazyPackage, LazyRecord};
pub use source::{RemoteSource, SourceStats};

/// Why there is no block cache: the default one needs a home.
pub const NO_DEFAULT_CACHE: &str =
    "no block cache: $HOME is not set (set EXOS_BLOCK_CACHE or give --block-cache DIR)";
