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

pub mod holdings;
pub mod index;
mod offer;
mod overlay;
mod plan;
pub mod query;
mod root;
mod transaction;
pub mod workflow;

use std::path::{Path, PathBuf};

pub use exos_root::{Layer, PackageFile, Sha256, StateEntry, StateList};
pub use offer::{installed, package_files};
pub use overlay::{add_overlay, overlays, remove_overlay};
pub use plan::{AdmittedPlan, FromRepository, PackageName, Plan};
pub use root::{diff, AcceptedSignature, FileAction, FileChange, GcReport, NewPackage, Root};
pub use transaction::{Request, Transaction};

// `Distrust` is defined below, beside `Error`.

/// Why a change to a root failed. Variants carry the paths and names
/// they are about; the CLI adds what to type next (flags, commands).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A package, record or name broke a rule.
    #[error("{what}: {rule}")]
    Invalid {
        /// What broke it (a file, an entry).
        what: String,
        /// The rule, in words.
        rule: String,
    },
    /// The directory is not an EXOS root.
    #[error("{}: not an EXOS root", .0.display())]
    NotARoot(PathBuf),
    /// A user has no layer of their own in the root.
    #[error("{user} has no layer of their own in this root ({} is missing; root makes it: exos user add {user})", .path.display())]
    NoUserLayer {
        /// The user.
        user: String,
        /// The missing directory.
        path: PathBuf,
    },
    /// A user's change would alter the shared layers.
    #[error("{package} is in the shared {layer} layer: only root changes it (a user's changes touch only their own layer)")]
    SharedPackage {
        /// The package.
        package: String,
        /// Its layer.
        layer: Layer,
    },
    /// A package the current state names is gone from the root.
    #[error("{layer}/{file} of the current state is missing")]
    MissingFromState {
        /// Its layer.
        layer: Layer,
        /// Its file name.
        file: PackageFile,
    },
    /// No active package has this name (in this layer).
    #[error("{name}: no package of that name{} in the current state", in_layer(*.layer))]
    NotActive {
        /// The name asked for.
        name: String,
        /// The layer asked for, if one was.
        layer: Option<Layer>,
    },
    /// A name is active in several layers and the request did not say
    /// which.
    #[error("{name} is installed in the {} layers", layer_list(.layers))]
    InSeveralLayers {
        /// The name asked for.
        name: String,
        /// The layers it is in.
        layers: Vec<Layer>,
    },
    /// No overlay of this package exists.
    #[error("{0}: no overlay")]
    NoOverlay(String),
    /// Overlays of this package exist in several layers and the request
    /// did not say which.
    #[error("{0} has overlays in several layers")]
    OverlaysInSeveralLayers(String),
    /// A removal names a package that is not installed.
    #[error("{0} is not installed, so it cannot be removed")]
    NotInstalled(String),
    /// A forced change applies files; names need the resolver.
    #[error(
        "a forced change applies exactly the files named; installing by name needs the resolver"
    )]
    ForcedByName,
    /// An upgrade (or autoremove) needs a consistent plan, which forcing
    /// skips.
    #[error("upgrade and autoremove cannot be forced: they need a consistent plan")]
    ForcedUpgrade,
    /// Two packages of a plan would have the same file name in a layer.
    #[error("two packages would both be {layer}/{file}")]
    SameFile {
        /// The layer.
        layer: Layer,
        /// The file name both would have.
        file: PackageFile,
    },
    /// A package the resolver chose has no file to install it from.
    #[error("{0}: no package file for it")]
    NoFileFor(String),
    /// A lazy install needs a block cache and none was given.
    #[error("no block cache")]
    NoBlockCache,
    /// A worker thread panicked.
    #[error("a {0} panicked")]
    Panicked(&'static str),
    /// The state file does not parse.
    #[error(transparent)]
    State(#[from] exos_root::StateError),
    /// A package does not read.
    #[error(transparent)]
    Package(#[from] exos_hpkg::Error),
    /// A manifest does not parse.
    #[error(transparent)]
    Manifest(#[from] exos_manifest::ManifestError),
    /// No consistent set of packages exists for the request.
    #[error(transparent)]
    Unsatisfiable(exos_resolve::ResolveError),
    /// The request itself is malformed (the resolver says how).
    #[error(transparent)]
    BadRequest(exos_resolve::ResolveError),
    /// The plan removes essential packages.
    #[error("refusing to remove essential packages ({0}): the system may not work without them")]
    Essential(String),
    /// The root's trust policy refuses a package.
    #[error(transparent)]
    Untrusted(#[from] Distrust),
    /// A key, signature or trust store file could not be used.
    #[error(transparent)]
    Trust(#[from] exos_trust::TrustError),
    /// A repository could not be used.
    #[error(transparent)]
    Repo(#[from] exos_repo::RepoError),
    /// A lazy record could not be read or written.
    #[error(transparent)]
    Lazy(#[from] exos_lazy::LazyError),
    /// The plan would change or remove held packages.
    #[error("held: {} (a held package is neither upgraded nor removed)", .0.join(", "))]
    Held(Vec<String>),
    /// The plan removes packages the request did not name.
    #[error("this would also remove {0}")]
    NeedsConsent(String),
    /// A download is not the package its signed index entry describes.
    #[error("{file} from {repository}: not the package its index entry describes")]
    NotTheIndexedPackage {
        /// The package file.
        file: String,
        /// The repository it came from.
        repository: String,
    },
}

/// Why a root's trust policy refuses a package.
#[derive(Debug, thiserror::Error)]
pub enum Distrust {
    /// The layer takes only signed packages and this one has no signature.
    #[error("{}: unsigned (no {}), and the {layer} layer takes only packages signed by a trusted key", .path.display(), .signature.display())]
    Unsigned {
        /// The package file.
        path: PathBuf,
        /// Where its signature would be.
        signature: PathBuf,
        /// The layer asked for.
        layer: Layer,
    },
    /// The signature file does not parse.
    #[error("{}: {rule}", .signature.display())]
    BadSignatureFile {
        /// The signature file.
        signature: PathBuf,
        /// The rule it broke.
        rule: exos_trust::FormatRule,
    },
    /// The signature does not verify, or its key is not trusted here.
    #[error("{}: {source}", .path.display())]
    Signature {
        /// The package file.
        path: PathBuf,
        /// Why the signature does not admit it.
        #[source]
        source: exos_trust::SignatureError,
    },
    /// An overlay is unsigned content, and the layer takes only signed
    /// packages.
    #[error("the {0} layer accepts only signed packages, and an overlay is unsigned content")]
    UnsignedOverlay(Layer),
    /// A lazy install does not fetch the whole file a signature covers.
    #[error("{file}: the {layer} layer accepts only signed packages, and a package signature covers the whole file, which a lazy install does not fetch")]
    LazyInSignedLayer {
        /// The package file.
        file: String,
        /// The layer asked for.
        layer: Layer,
    },
}

impl Error {
    /// `what` broke `rule`.
    pub fn invalid(what: impl std::fmt::Display, rule: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.to_string(),
            rule: rule.into(),
        }
    }
}

fn in_layer(layer: Option<Layer>) -> String {
    layer.map_or(String::new(), |l| format!(" in the {} layer", l.name()))
}

fn layer_list(layers: &[Layer]) -> String {
    layers
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A manager operation's result.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) trait Ctx<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T>;
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: what.as_ref().to_path_buf(),
            source,
        })
    }
}
