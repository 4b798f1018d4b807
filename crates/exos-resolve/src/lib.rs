//! # exos-resolve — dependency resolution by API contract
//!
//! Given the installed packages, the available ones and a request (install,
//! remove, upgrade), [`resolve`] computes a consistent set of packages or
//! explains, as a chain of requirements, why none exists.
//!
//! Solving is done by [`resolvo`], a CDCL SAT solver with conflict-driven
//! learning (the algorithm family of libsolv). The mapping onto its model:
//!
//! * **Slots.** resolvo selects at most one solvable per *name*. Our names
//!   are slots, `(package name, major version)`: two majors of a package can
//!   be active together (different consumers may need incompatible APIs),
//!   two releases of one major cannot.
//! * **Requirements by contract.** A requirement `api RANGE` becomes the
//!   union, over every slot that has a provider of `api`, of the version set
//!   "provides `api` in `RANGE`". Alternatives (`any`) widen the union. A
//!   requirement nobody can meet names the API, so the explanation says
//!   what is missing. `uses` are requirements too; APIs the host provides
//!   are fed in as packages (see [`host_api`]).
//! * **Conflicts and replaces** become resolvo constraints on the other
//!   slots ("if chosen, must not provide `api` in `RANGE`").
//! * **Installed packages** are soft requirements and favoured candidates:
//!   they stay unless the request cannot be met with them, in which case
//!   the plan lists them as removed and says why.
//!
//! Ranges match providers with libsolv's Haiku semantics
//! ([`exos_manifest::range`]).

#![forbid(unsafe_code)]

mod plan;
mod provider;

use exos_hpkg::Version;
use exos_manifest::{Dependency, Manifest, Provide};

pub use plan::{Change, PackageRef, Plan, RemovalReason};

/// Where a candidate comes from (for people: what `resolve` prints).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// Active on the system; `location` is e.g. `system/packages/foo.hpkg`.
    Installed { location: String },
    /// Can be installed from `source` (a package file, repository, index).
    Available { source: String },
    /// An API the host system offers (`--host-api`); never installed or removed.
    Host,
}

/// A key the caller gives each candidate; plans carry it back, so a
/// chosen package maps to the caller's own record of it (its file, its
/// state entry) without parsing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandidateId(pub u32);

impl CandidateId {
    /// The id of host APIs (never part of a plan's result).
    pub const HOST: CandidateId = CandidateId(u32::MAX);
}

/// One package the resolver may choose.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub manifest: Manifest,
    pub origin: Origin,
    pub id: CandidateId,
}

impl Candidate {
    pub fn is_installed(&self) -> bool {
        matches!(self.origin, Origin::Installed { .. })
    }
}

/// A pseudo-package standing for an API the host provides (e.g. a GPU
/// driver stack offering `system.cuda = 12.4`).
pub fn host_api(api: &str, version: Option<Version>) -> Candidate {
    let manifest = Manifest {
        name: format!("host:{api}"),
        version: version.clone().unwrap_or_else(|| Version {
            major: "0".into(),
            ..Default::default()
        }),
        summary: format!("{api}, provided by the host"),
        description: String::new(),
        license: None,
        copyright: None,
        vendor: None,
        packager: None,
        homepage: None,
        architecture: exos_hpkg::Architecture::Any,
        provides: vec![Provide {
            api: api.to_string(),
            version,
            compatible: None,
        }],
        requires: Vec::new(),
        uses: Vec::new(),
        conflicts: Vec::new(),
        replaces: Vec::new(),
        essential: false,
    };
    Candidate {
        manifest,
        origin: Origin::Host,
        id: CandidateId::HOST,
    }
}

/// What the user asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Make each dependency satisfied (by name or by any API provider).
    Install(Vec<Dependency>),
    /// Install exactly these releases (package name and version), e.g. the
    /// package files a user named.
    InstallExact(Vec<(String, Version)>),
    /// Remove installed packages by name, and whatever can no longer work
    /// without them.
    Remove(Vec<String>),
    /// Move the named installed packages (all when empty) to their newest
    /// versions that fit together.
    Upgrade(Vec<String>),
}

/// Why no plan exists.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No consistent set exists; the text is the chain of requirements.
    #[error("no consistent set of packages exists:\n{0}")]
    Unsatisfiable(String),
    /// The request itself is wrong (e.g. removing something not installed).
    #[error("{0}")]
    BadRequest(String),
}

/// The packages the resolver knows: installed, available and host APIs.
/// Duplicates (same name and version) keep the first installed copy, else
/// the first seen.
pub struct Universe {
    pub(crate) candidates: Vec<Candidate>,
}

/// Name of the pseudo-package every solution contains (see `provider`).
pub(crate) const ANCHOR: &str = "(installed set)";

impl Universe {
    pub fn new(mut candidates: Vec<Candidate>) -> Universe {
        // Keep the first installed copy, else the first seen.
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(candidates.len());
        let mut keep = vec![false; candidates.len()];
        for installed_pass in [true, false] {
            for (i, c) in candidates.iter().enumerate() {
                if c.is_installed() == installed_pass {
                    keep[i] = seen.insert((c.manifest.name.as_str(), &c.manifest.version));
                }
            }
        }
        drop(seen);
        let mut keep = keep.into_iter();
        candidates.retain(|_| keep.next().unwrap_or(false));
        let mut anchor = host_api(ANCHOR, None);
        anchor.manifest.name = ANCHOR.to_string();
        anchor.manifest.provides.clear();
        candidates.push(anchor);
        Universe { candidates }
    }

    /// Every candidate, the internal anchor excluded.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates[..self.candidates.len() - 1]
    }
}

/// Solver statistics for `--stats` output and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub candidates: usize,
    pub solve_seconds: f64,
}

/// Computes the plan for `request`.
pub fn resolve(universe: &Universe, request: &Request) -> Result<(Plan, Stats), ResolveError> {
    provider::solve(universe, request)
}
