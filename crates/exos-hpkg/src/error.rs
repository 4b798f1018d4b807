//! Errors of the format crate.
//!
//! Every error that concerns a file carries its path, so a user reading
//! `exos: /x/foo.hpkg: TOC: string index 9 out of range (3 strings)` knows both
//! *which* file and *what* is wrong with it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, without saying where.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The first four bytes are neither `hpkg` nor `hpkr`.
    #[error("not an HPKG/HPKR file (bad magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// A version 1 file (of this kind).
    #[error("unsupported legacy v1 {0} file (only v2 is supported)")]
    LegacyV1(&'static str),
    /// A format version other than 2.
    #[error("unsupported format version {0} (only 2 is supported)")]
    UnsupportedVersion(u16),
    /// The file violates the format; the message says which rule.
    #[error("{0}")]
    Corrupt(String),
    /// A sanity limit that bounds memory use was exceeded.
    #[error("{what} is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Decoding the file would take more memory than its size justifies
    /// (see [`crate::budget`]).
    #[error("{what} would need more than {needed} bytes of memory, over the limit of {limit} bytes for a {file_size}-byte file (opening a file may cost only a bounded multiple of its size)")]
    OverBudget {
        /// What would need it.
        what: &'static str,
        /// Bytes it would need.
        needed: u64,
        /// The budget.
        limit: u64,
        /// The file's size, which the budget is a multiple of.
        file_size: u64,
    },
    /// Input that is fine in itself but cannot be represented in a package.
    #[error("{0}")]
    Unsupported(String),
    /// An encrypted package whose key was not given.
    #[error("encrypted package (key {0}): its key was not given")]
    Encrypted(String),
}

/// An error, optionally tied to the file it concerns.
#[derive(Debug)]
pub struct Error {
    path: Option<PathBuf>,
    kind: ErrorKind,
}

/// A format operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The file it concerns, when known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Attaches a path unless one is already set (the innermost path wins,
    /// because it is the most precise).
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.as_ref().to_path_buf());
        }
        self
    }

    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        ErrorKind::Corrupt(msg.into()).into()
    }

    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        ErrorKind::Unsupported(msg.into()).into()
    }

    /// True when the error is about the file's content rather than I/O.
    pub fn is_format_error(&self) -> bool {
        !matches!(self.kind, ErrorKind::Io(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

// No `source()`: the message already includes the I/O error's text, and a
// chain would print it twice ("… (os error 2): … (os error 2)").
impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error { path: None, kind }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        ErrorKind::Io(e).into()
    }
}

/// Shorthand for returning a corruption error with a formatted message.
macro_rules! corrupt {
    ($($arg:tt)*) => { $crate::error::Error::corrupt(format!($($arg)*)) };
}
pub(crate) use corrupt;

/// Extension to attach a path to any result.
pub trait ResultExt<T> {
    /// Attaches `path` to an error (unless it has one).
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| e.into().with_path(path))
    }
}
