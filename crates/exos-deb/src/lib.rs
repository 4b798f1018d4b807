//! Debian packages to EXOS packages (`exos import-deb`).
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar.*` and
//! `data.tar.*` (gz, xz or zst). [`import()`] reads it once, front to back:
//! the control paragraph becomes a manifest (Depends and Pre-Depends with
//! their alternatives → requires, Provides → provides, Conflicts and Breaks
//! → conflicts, Essential → essential; package names with `-` become `_`),
//! the version maps exactly onto Haiku's order ([`version`]), the files are
//! unpacked with `/bin`, `/sbin` and `/lib*` moved into `/usr` (merged
//! /usr; [`usr_links_package`] ships the top-level links once), and the
//! literal `update-alternatives --install` calls of `postinst` become links
//! inside the package. Nothing else of the maintainer scripts runs: a
//! mounted system has nothing to configure in place.
//!
//! Hostile input: every member is read as a stream; control data is capped
//! at 1 MiB, a file at 1 GiB and all the data at 4 GiB unpacked ([`Limits`],
//! which a caller may raise); nothing is written outside the staging directory (no `..`, no
//! absolute paths, no writing through links); device files are dropped.

#![forbid(unsafe_code)]

pub mod control;
pub mod import;
pub mod version;

pub use import::{
    default_build_options, import, import_limited, import_with, usr_links_package, Imported, Limits,
};

/// Why a `.deb` could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The package (first) broke a rule of the format (second).
    #[error("{0}: {1}")]
    Format(String, String),
    /// Reading or writing (what, first) failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Unpacking would pass one of the [`Limits`].
    #[error("{file}: {limit}")]
    OverLimit {
        /// The package.
        file: String,
        /// Which limit, and by how much.
        limit: OverLimit,
    },
}

/// Which of the [`Limits`] a package passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// One file is larger than `Limits::max_file`.
    #[error("data.tar: {entry} holds {bytes} bytes, more than the {mib} MiB a file may")]
    File {
        /// The file's path in the archive.
        entry: String,
        /// Its size.
        bytes: u64,
        /// The limit, in MiB.
        mib: u64,
    },
    /// The package unpacks to more than `Limits::max_package`.
    #[error("data.tar unpacks to more than {mib} MiB, the limit for a package")]
    Package {
        /// The limit, in MiB.
        mib: u64,
    },
}
