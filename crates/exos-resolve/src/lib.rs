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

mod intern;
mod plan;
mod pool;
mod provider;

use exos_manifest::{Dependency, Manifest, ManifestRef, Provide};
use exos_version::Version;

pub use crate::pool::PoolMemory;
use crate::pool::{Pool, Segment};

pub use plan::{Change, PackageRef, Plan, RemovalReason};

/// Where a candidate comes from (for people: what `resolve` prints).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// Active on the system; `location` is e.g. `system/packages/foo.hpkg`.
    Installed {
        /// Where it is (`system/packages/foo.hpkg`).
        location: String,
    },
    /// Can be installed from `source` (a package file, repository, index).
    Available {
        /// Where it comes from (a file, a repository, an index).
        source: String,
    },
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
    /// Its manifest: what it provides and requires.
    pub manifest: Manifest,
    /// Installed, or where it can be installed from.
    pub origin: Origin,
    /// The caller's key for it, returned in the plan.
    pub id: CandidateId,
}

impl Candidate {
    /// Whether it is installed now.
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
        architecture: exos_version::Architecture::Any,
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
        private: Vec::new(),
        command: None,
        original_version: None,
        original_name: None,
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

/// The packages the resolver knows: installed, available and host APIs,
/// interned (see `pool`). Duplicates (same name and version) keep the first
/// installed copy, else the first seen.
pub struct Universe {
    pub(crate) pool: Pool,
}

/// Name of the pseudo-package every solution contains (see `provider`).
pub(crate) const ANCHOR: &str = "(installed set)";

impl Universe {
    /// The universe of these candidates (and the anchor of the installed set).
    pub fn new(candidates: Vec<Candidate>) -> Universe {
        let mut b = UniverseBuilder::new();
        for c in &candidates {
            b.add(c);
        }
        b.finish()
    }

    /// How many candidates there are.
    pub fn len(&self) -> usize {
        self.pool.solvables.len() - 1
    }

    /// Whether there are no candidates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct names, versions and ranges, and the bytes they take.
    pub fn memory(&self) -> PoolMemory {
        self.pool.memory()
    }
}

/// Builds a [`Universe`] one candidate at a time, from owned manifests or
/// straight from checked, borrowed ones (a JSON-lines index of tens of
/// thousands of packages never exists as `Manifest`s).
pub struct UniverseBuilder {
    pool: Pool,
}

impl Default for UniverseBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl UniverseBuilder {
    /// An empty builder.
    pub fn new() -> UniverseBuilder {
        UniverseBuilder { pool: Pool::new() }
    }

    /// Adds a candidate (copied into the pool's interned tables).
    pub fn add(&mut self, c: &Candidate) {
        self.pool.add(&c.manifest, c.origin.clone(), c.id);
    }

    /// Makes room for `bytes` of manifest JSON about to be added.
    pub fn reserve_for_json(&mut self, bytes: usize) {
        self.pool.reserve_for_json(bytes);
    }

    /// Adds the manifests of `text`, whole lines of a JSON-lines index
    /// (blank lines skipped), using every core: each thread splits off its
    /// lines, parses and checks them ([`ManifestRef`], nothing copied) and
    /// interns them into the shared tables, building its own segment; the
    /// segments are appended in order. Candidates are numbered from
    /// `first`; errors name `file` and the line (`lines_before` lines
    /// precede `text` in it). Returns how many were added.
    pub fn add_json_lines(
        &mut self,
        text: &[u8],
        lines_before: usize,
        file: &str,
        origin: Origin,
        first: u32,
    ) -> Result<usize, exos_manifest::ManifestError> {
        use rayon::prelude::*;
        let origin = self.pool.origin_id(origin);
        let line_number = |line: &[u8]| {
            let offset = line.as_ptr() as usize - text.as_ptr() as usize;
            lines_before + text[..offset].iter().filter(|&&b| b == b'\n').count() + 1
        };
        let segments: Vec<Segment> = {
            let tables = self.pool.share();
            text.par_split(|&b| b == b'\n')
                .filter(|line| !line.trim_ascii().is_empty())
                .try_fold(Segment::default, |mut seg, line| {
                    let m = ManifestRef::parse(line, "").map_err(|mut e| {
                        e.file = format!("{file} line {}", line_number(line));
                        e
                    })?;
                    seg.add_ref(&tables, &m, origin);
                    Ok::<_, exos_manifest::ManifestError>(seg)
                })
                .collect::<Result<_, _>>()?
        };
        let mut next = first;
        for seg in segments {
            let n = seg.len() as u32;
            self.pool.append(seg, next);
            next += n;
        }
        Ok((next - first) as usize)
    }

    /// The universe of the candidates added.
    pub fn finish(mut self) -> Universe {
        let pool = &mut self.pool;
        // Keep the first installed copy, else the first seen.
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(pool.solvables.len());
        let mut keep = vec![false; pool.solvables.len()];
        for installed_pass in [true, false] {
            for (i, s) in pool.solvables.iter().enumerate() {
                let installed = matches!(pool.origin(s), Origin::Installed { .. });
                if installed == installed_pass {
                    keep[i] = seen.insert((s.name, s.version));
                }
            }
        }
        drop(seen);
        let mut keep = keep.into_iter();
        pool.solvables.retain(|_| keep.next().unwrap_or(false));
        let mut anchor = host_api(ANCHOR, None);
        anchor.manifest.name = ANCHOR.to_string();
        anchor.manifest.provides.clear();
        pool.add(&anchor.manifest, anchor.origin, anchor.id);
        Universe { pool: self.pool }
    }
}

/// Solver statistics for `--stats` output and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Candidates in the universe.
    pub candidates: usize,
    /// Time the solver took.
    pub solve_seconds: f64,
}

/// Computes the plan for `request`.
pub fn resolve(universe: &Universe, request: &Request) -> Result<(Plan, Stats), ResolveError> {
    provider::solve(universe, request)
}
