//! What can go wrong making or applying a delta; every error names the file.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, DeltaError>;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The delta breaks a rule of its format (the rule is named).
    #[error("{}: not a valid delta: {rule}", path.display())]
    Invalid { path: PathBuf, rule: String },
    /// A package could not be read.
    #[error("{}: {source}", path.display())]
    Package {
        path: PathBuf,
        source: exos_hpkg::Error,
    },
    /// The old package is not the one the delta was made from.
    #[error("{}: made from a package with SHA-256 {expected} ({expected_size} bytes), but {} is {found} ({found_size} bytes)", delta.display(), old.display())]
    WrongBase {
        delta: PathBuf,
        old: PathBuf,
        expected: String,
        expected_size: u64,
        found: String,
        found_size: u64,
    },
    /// Applying went through but did not give the promised package.
    #[error("{}: the rebuilt package is {found} ({found_size} bytes), the delta promises {expected} ({expected_size} bytes); nothing was written", path.display())]
    Mismatch {
        path: PathBuf,
        expected: String,
        expected_size: u64,
        found: String,
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
