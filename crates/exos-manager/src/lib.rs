//! # exos-manager — install, remove, upgrade, states and rollback
//!
//! The package manager over an EXOS root (layout: [`exos_root`]). Two
//! layers:
//!
//! * [`Transaction`] — a change from request to plan: installed packages
//!   and offered files become resolver candidates, the resolver computes a
//!   consistent set, and the [`Plan`] says what the switch will do, which
//!   packages it removes unasked and which essential packages it touches
//!   ([`Plan::check_consent`]). Front ends (the CLI, later a daemon or a
//!   repository client) render plans and ask; they decide nothing.
//! * [`Root`] — the mechanics: the writer lock, numbered states, the
//!   store, [`Root::switch`], recovery, gc and check.
//!
//! Every change runs [`Root::switch`]: new package files are copied to a
//! temporary name, synced and renamed into the store; the new numbered state
//! is written; then `active.list` is replaced by rename — the commit point —
//! and finally files are moved (renamed, never copied) between the store and
//! the packages directories to match. A crash anywhere leaves the old or the
//! new state current and consistent (every entry of every state is found,
//! with its hash, in its packages directory or in the store; packagefs
//! looks in both); leftovers are tidied by [`Root::recover`], which every
//! change runs first under the lock. Rollback is the same switch to an
//! older list: renames only.
//!
//! Invariant: the current state is always one that was committed whole;
//! states numbered above it never exist after recovery.

#![forbid(unsafe_code)]

mod offer;
mod overlay;
mod plan;
mod root;
mod transaction;
pub mod workflow;

use std::path::Path;

pub use exos_root::{Layer, PackageFile, Sha256, StateEntry, StateList};
pub use offer::{installed, package_files};
pub use overlay::{add_overlay, overlays, remove_overlay};
pub use plan::{AdmittedPlan, FromRepository, PackageName, Plan};
pub use root::{diff, AcceptedSignature, FileAction, FileChange, GcReport, NewPackage, Root};
pub use transaction::{Request, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    State(#[from] exos_root::StateError),
    #[error(transparent)]
    Package(#[from] exos_hpkg::Error),
    #[error(transparent)]
    Manifest(#[from] exos_manifest::ManifestError),
    /// No consistent set of packages exists for the request.
    #[error(transparent)]
    Unsatisfiable(exos_resolve::ResolveError),
    /// The plan removes essential packages.
    #[error("refusing to remove essential packages ({0}): the system may not work without them (--force to do it anyway)")]
    Essential(String),
    /// The root's trust policy refuses a package.
    #[error("{0}")]
    Untrusted(String),
    #[error(transparent)]
    Trust(#[from] exos_trust::TrustError),
    #[error(transparent)]
    Repo(#[from] exos_repo::RepoError),
    /// The plan removes packages the request did not name.
    #[error("this would also remove {0} (--yes to go ahead)")]
    NeedsConsent(String),
    /// A download is not the package its signed index entry describes.
    #[error("{file} from {repository}: not the package its index entry describes")]
    NotTheIndexedPackage { file: String, repository: String },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) trait Ctx<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T>;
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::Io(what.as_ref().display().to_string(), e))
    }
}
