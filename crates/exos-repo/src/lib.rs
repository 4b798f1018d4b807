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

use std::path::PathBuf;

pub mod blocks;
pub mod client;
pub mod metadata;
pub mod publish;
pub mod repo_info;
pub mod transport;

pub use blocks::{BlockMap, BlockMapRef};
pub use client::{Client, Fetched, OfferedPackage, RepoConfig, Repository};
pub use transport::{Location, Timeouts, Transport};

/// Why a repository operation failed. Every variant names the file, path
/// or URL it is about; causes from other layers stay reachable as
/// `source()`.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Fetching from a URL failed.
    #[error("{url}: {failure}")]
    Network {
        /// The URL.
        url: String,
        /// How it failed.
        #[source]
        failure: NetworkFailure,
    },
    /// A document or file broke a rule of its format.
    #[error("{file}: {rule}")]
    Invalid {
        /// The document or file.
        file: String,
        /// The rule, in words.
        rule: String,
    },
    /// A JSON document does not parse.
    #[error("{file}: {source}")]
    Json {
        /// The document.
        file: String,
        /// Where and how it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A package file does not read as HPKG.
    #[error("{}: {source}", path.display())]
    Package {
        /// The package file.
        path: PathBuf,
        /// Why it does not read.
        #[source]
        source: exos_hpkg::Error,
    },
    /// A manifest in an index does not parse.
    #[error(transparent)]
    Manifest(#[from] exos_manifest::ManifestError),
    /// A delta did not apply.
    #[error("{file}: {source}")]
    Delta {
        /// The delta.
        file: String,
        /// Why it did not apply.
        #[source]
        source: Box<exos_delta::DeltaError>,
    },
    /// A signature, version, size or digest check failed.
    #[error("{file}: {rule}")]
    Untrusted {
        /// The document or file.
        file: String,
        /// The check it failed, in words.
        rule: String,
    },
    /// Signed metadata is past its expiry: a repository that stopped
    /// updating, or a replay of old metadata.
    #[error("{file} expired at {} (a repository that stopped updating, or a replay of old metadata)", utc(*at))]
    Expired {
        /// The document.
        file: String,
        /// When it expired (seconds since the epoch).
        at: u64,
    },
    /// No repository of this name is configured.
    #[error("no repository named {0:?}")]
    UnknownRepository(String),
    /// A repository of this name is configured already.
    #[error("a repository named {0:?} exists")]
    RepositoryExists(String),
    /// The repository's metadata was never fetched.
    #[error("{0}: never refreshed")]
    NeverRefreshed(String),
    /// The repository has no pinned root.
    #[error("{0}: no trusted root")]
    NoTrustedRoot(String),
    /// A key or signature file could not be used.
    #[error(transparent)]
    Trust(#[from] exos_trust::TrustError),
}

impl RepoError {
    /// `file` broke `rule`.
    pub fn invalid(file: impl std::fmt::Display, rule: impl Into<String>) -> RepoError {
        RepoError::Invalid {
            file: file.to_string(),
            rule: rule.into(),
        }
    }

    /// `file` failed the check `rule`.
    pub fn untrusted(file: impl std::fmt::Display, rule: impl Into<String>) -> RepoError {
        RepoError::Untrusted {
            file: file.to_string(),
            rule: rule.into(),
        }
    }

    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> RepoError {
        RepoError::Io {
            path: path.into(),
            source,
        }
    }

    /// A failure fetching `url`.
    pub fn network(url: impl Into<String>, failure: NetworkFailure) -> RepoError {
        RepoError::Network {
            url: url.into(),
            failure,
        }
    }
}

/// How fetching from a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkFailure {
    /// The request did not complete (DNS, connection, TLS, timeout).
    #[error("{0}")]
    Request(#[source] Box<ureq::Error>),
    /// The server answered with a status other than the one expected.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The server answered a range request with another status.
    #[error("the server answered HTTP {status} for bytes {start}-{end}")]
    RangeStatus {
        /// The status.
        status: u16,
        /// The first byte asked for.
        start: u64,
        /// The last byte asked for.
        end: u64,
    },
    /// The server sent the whole file for a range request.
    #[error("the server ignored the Range request (lazy mounts need HTTP Range support)")]
    RangeIgnored,
    /// The file is not on the server.
    #[error("not found (HTTP 404)")]
    NotFound,
    /// Reading the body failed.
    #[error("{source} after {got} of {size} bytes")]
    Interrupted {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        size: u64,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed before the body was complete.
    #[error("the connection ended after {got} of {size} bytes")]
    EndedEarly {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        size: u64,
    },
}

impl NetworkFailure {
    /// Whether running the same command again resumes where this stopped.
    pub fn resumable(&self) -> bool {
        matches!(
            self,
            NetworkFailure::Interrupted { .. } | NetworkFailure::EndedEarly { .. }
        )
    }
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
