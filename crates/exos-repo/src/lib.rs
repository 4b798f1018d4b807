//! # exos-repo — repositories: publishing, signed metadata, fetching
//!
//! * [`blocks`]: block maps (`FILE.blocks`), which let a package be
//!   fetched and verified a block at a time (lazy mounts).
//! * [`metadata`]: the three signed documents of a repository (`root.json`,
//!   `index.json`, `timestamp.json`), modelled on TUF's roles.
//! * [`publish`]: `exos repo index DIR` and `exos repo refresh-timestamp`.
//! * [`transport`]: `file://`, paths, `http(s)://` (ureq, rustls) with size
//!   limits, timeouts and resumable downloads.
//! * [`client`]: the repositories a root is configured with
//!   (`system/state/repos.json`), their trusted metadata
//!   (`system/state/repos/NAME/`), refresh, and the download cache.
//!
//! Invariant: the client trusts an index only through a chain of
//! signatures from the root key pinned when the repository was added, with
//! versions that never go down, unexpired, and consistent (the index is the
//! one the timestamp names, by version, size and hash); it records the
//! highest versions seen before it uses anything new.

#![forbid(unsafe_code)]

pub mod blocks;
pub mod client;
pub mod metadata;
pub mod publish;
pub mod repo_info;
pub mod transport;

pub use blocks::{BlockMap, BlockMapRef};
pub use client::{Client, Fetched, OfferedPackage, RepoConfig, Repository};
pub use transport::{Location, Timeouts, Transport};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The network failed: what was fetched, then why.
    #[error("{0}: {1}")]
    Network(String, String),
    /// A document or file broke a rule.
    #[error("{0}")]
    Invalid(String),
    /// A signature, version or expiry check failed.
    #[error("{0}")]
    Untrusted(String),
    #[error(transparent)]
    Trust(#[from] exos_trust::TrustError),
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A UTC date for people (`2026-11-26 03:30:00 UTC`).
pub fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_print_in_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_795_662_131), "2026-11-26 03:02:11 UTC");
    }
}
