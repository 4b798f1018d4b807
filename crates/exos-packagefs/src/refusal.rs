//! Why activation refused a package, an overlay or a layer: typed, so code
//! can tell the reasons apart; shown as text by `exos status` and in
//! `status.json` (`refused[].reason`).

use std::sync::Arc;

use exos_root::{Layer, Sha256};

/// Why a package file (or overlay, or per-user layer) is not served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefusalReason {
    /// The file does not open as a package (a rule of the format broken,
    /// an I/O error, a sealed package whose key is not given).
    #[error("{0}")]
    Package(Arc<exos_hpkg::Error>),
    /// Its manifest is invalid or disagrees with its attributes.
    #[error("{0}")]
    Manifest(Arc<exos_manifest::ManifestError>),
    /// It ships a top-level name packagefs generates.
    #[error("contains the top-level entry {name:?}, a name packagefs reserves for the metadata it shows")]
    ReservedName {
        /// The name.
        name: String,
    },
    /// Its bytes are not the ones the state recorded.
    #[error("checksum mismatch: SHA-256 is {got}, the state expects {want}")]
    Checksum {
        /// What the file hashes to.
        got: Sha256,
        /// What the state says.
        want: Sha256,
    },
    /// The layer's trust policy refuses it.
    #[error("{0}")]
    Signature(Arc<exos_trust::SignatureError>),
    /// The file cannot be served from where it is: a link, a file its
    /// directory's writers could not read, a file that does not open.
    #[error("{0}")]
    Unservable(String),
    /// Sealed, and the mount's key for it does not serve this layer.
    #[error("{0}")]
    KeyWithheld(String),
    /// A state list is in force and does not name it.
    #[error("not in the state list (not part of the current state)")]
    NotInState,
    /// The state names it, and it is nowhere.
    #[error("missing from the packages directory and the store")]
    Missing,
    /// Installed lazily into a layer that requires signatures.
    #[error("installed lazily, but the {0} layer accepts only signed packages (a signature covers the whole file; install it without --lazy)")]
    LazyInSignedLayer(Layer),
    /// A lazily installed package's record, block map or blocks.
    #[error("{0}")]
    Lazy(String),
    /// Past the mount's memory budget.
    #[error("the mount's memory budget is used up: this package needs {needs_kib} KiB, {left_kib} KiB of {budget_kib} KiB remain (raise it with --max-memory-mib)")]
    MemoryBudget {
        /// What the package costs.
        needs_kib: u64,
        /// What is left of the budget.
        left_kib: u64,
        /// The whole budget.
        budget_kib: u64,
    },
    /// It `uses` a system API nothing active provides.
    #[error("uses system API {0}, which no active package provides (`exos install --missing` fetches a provider from the repositories)")]
    MissingApi(String),
    /// The root's trust store cannot be read: nothing is trusted.
    #[error("{0}")]
    TrustStore(Arc<exos_trust::TrustError>),
    /// The state list in force cannot be read: nothing is trusted.
    #[error("{0}")]
    StateList(Arc<exos_root::StateError>),
    /// A per-user layer whose directories someone else controls.
    #[error("{0}")]
    UserLayer(String),
    /// The runtime overlays file cannot be read.
    #[error("{0}")]
    OverlayFile(Arc<exos_root::StateError>),
    /// A runtime overlay that cannot be shown.
    #[error("overlay of {package}: {reason}")]
    Overlay {
        /// The package.
        package: String,
        /// Why, in words.
        reason: String,
    },
}

impl From<exos_hpkg::Error> for RefusalReason {
    fn from(e: exos_hpkg::Error) -> RefusalReason {
        RefusalReason::Package(Arc::new(e))
    }
}

impl From<exos_manifest::ManifestError> for RefusalReason {
    fn from(e: exos_manifest::ManifestError) -> RefusalReason {
        RefusalReason::Manifest(Arc::new(e))
    }
}

impl From<exos_trust::SignatureError> for RefusalReason {
    fn from(e: exos_trust::SignatureError) -> RefusalReason {
        RefusalReason::Signature(Arc::new(e))
    }
}
