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

use std::path::PathBuf;

/// The block cache a mount and `exos install --lazy` use unless told
/// otherwise: `$EXOS_BLOCK_CACHE`, else `/var/cache/exos/blocks` for root
/// and `$XDG_CACHE_HOME/exos/blocks` (or `~/.cache/exos/blocks`) for
/// others; `None` for a user with neither (no shared fallback such as
/// `/tmp`, where another user could have prepared the path). One per
/// machine and user, whatever the root: blocks are named by their hash, so
/// every root and mount shares them.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("EXOS_BLOCK_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/var/cache/exos/blocks"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("exos").join("blocks"))
}

/// Why [`default_cache_dir`] gave none.
pub const NO_DEFAULT_CACHE: &str =
    "no block cache: $HOME is not set (set EXOS_BLOCK_CACHE or give --block-cache DIR)";
