//! What can go wrong making or applying a delta; every error names the file.

use std::path::PathBuf;

/// A delta operation's result.
pub type Result<T> = std::result::Result<T, DeltaError>;

/// Why a delta could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The delta breaks a rule of its format (the rule is named).
    #[error("{}: not a valid delta: {rule}", path.display())]
    Invalid {
        /// The delta.
        path: PathBuf,
        /// The rule, in words.
        rule: String,
    },
    /// A package could not be read.
    #[error("{}: {source}", path.display())]
    Package {
        /// The package.
        path: PathBuf,
        /// Why it could not be read.
        source: exos_hpkg::Error,
    },
    /// The old package is not the one the delta was made from.
    #[error("{}: made from a package with SHA-256 {expected} ({expected_size} bytes), but {} is {found} ({found_size} bytes)", delta.display(), old.display())]
    WrongBase {
        /// The delta.
        delta: PathBuf,
        /// The old package given.
        old: PathBuf,
        /// The SHA-256 the delta was made from.
        expected: String,
        /// The size the delta was made from.
        expected_size: u64,
        /// The old package's SHA-256.
        found: String,
        /// The old package's size.
        found_size: u64,
    },
    /// Applying went through but did not give the promised package.
    #[error("{}: the rebuilt package is {found} ({found_size} bytes), the delta promises {expected} ({expected_size} bytes); nothing was written", path.display())]
    Mismatch {
        /// The delta.
        path: PathBuf,
        /// The SHA-256 promised.
        expected: String,
        /// The size promised.
        expected_size: u64,
        /// The SHA-256 rebuilt.
        found: String,
        /// The size rebuilt.
        found_size: u64,
    },
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DeltaError + '_ {
    move |source| DeltaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn invalid(path: &std::path::Path, rule: impl Into<String>) -> DeltaError {
    DeltaError::Invalid {
        path: path.to_path_buf(),
        rule: rule.into(),
    }
}

pub(crate) fn package(path: &std::path::Path) -> impl FnOnce(exos_hpkg::Error) -> DeltaError + '_ {
    move |source| DeltaError::Package {
        path: path.to_path_buf(),
        source,
    }
}
