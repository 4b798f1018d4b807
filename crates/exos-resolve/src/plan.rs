//! The outcome of a resolution: what changes, and why packages go.

use std::collections::HashSet;

use exos_version::Version;

use crate::pool::{Pool, Solvable};
use crate::{CandidateId, Origin, Request, Universe};

/// A package as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageRef {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// Installed, or where it is installed from.
    pub origin: Origin,
    /// The name as the package's origin wrote it (an imported Debian
    /// package's), when the caller filled it in ([`Plan::name_originals`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
    /// The version as the package's origin wrote it, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_version: Option<String>,
    /// The caller's key of the candidate.
    #[serde(skip)]
    pub id: CandidateId,
}

impl PackageRef {
    fn of(pool: &Pool, s: &Solvable) -> PackageRef {
        PackageRef {
            name: pool.name(s.name).to_string(),
            version: pool.version(s.version).clone(),
            origin: pool.origin(s).clone(),
            original_name: None,
            original_version: None,
            id: s.id,
        }
    }
}

/// The package as people know it: its origin's name and version when it
/// has them.
impl std::fmt::Display for PackageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.original_name.as_deref().unwrap_or(&self.name);
        match &self.original_version {
            Some(v) => write!(f, "{name} {v}"),
            None => write!(f, "{name} {}", self.version),
        }
    }
}

/// Why an installed package leaves the system. Serialized as its text
/// ("requested", "replaced by foo 2.0", …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalReason {
    /// The request named it.
    Requested,
    /// A package in the new set replaces it.
    ReplacedBy(String),
    /// A package in the new set conflicts with it.
    ConflictsWith(String),
    /// One of its requirements is no longer met (the requirement's text).
    Unmet(String),
    /// Installed only as a dependency, and nothing needs it any more
    /// (set by the package manager for `autoremove`).
    Unneeded,
    /// It could not stay beside the new set (e.g. its slot is taken by the
    /// version another package needs).
    Displaced,
}

impl serde::Serialize for RemovalReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemovalReason::Requested => f.write_str("requested"),
            RemovalReason::ReplacedBy(p) => write!(f, "replaced by {p}"),
            RemovalReason::ConflictsWith(p) => write!(f, "conflicts with {p}"),
            RemovalReason::Unmet(r) => write!(f, "its requirement {r} can no longer be met"),
            RemovalReason::Displaced => f.write_str("cannot stay beside the new set"),
            RemovalReason::Unneeded => f.write_str("no longer needed"),
        }
    }
}

/// One change of a plan; in JSON `{"action": "install", …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Change {
    /// A package not installed before.
    Install {
        /// The package installed.
        package: PackageRef,
    },
    /// Same package name, newer version.
    Upgrade {
        /// The version installed now.
        from: PackageRef,
        /// The version that replaces it.
        to: PackageRef,
    },
    /// Same package name, older version.
    Downgrade {
        /// The version installed now.
        from: PackageRef,
        /// The version that replaces it.
        to: PackageRef,
    },
    /// An installed package removed.
    Remove {
        /// The package removed.
        package: PackageRef,
        /// Why it goes.
        reason: RemovalReason,
    },
}

/// A consistent outcome: the changes and the resulting installed set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Sorted by package name and version.
    pub changes: Vec<Change>,
    /// Every package of the resulting set (host APIs excluded), by name.
    pub result: Vec<PackageRef>,
}

impl Plan {
    /// Fills in each package's original name and version from `lookup`
    /// (by the caller's key), for showing.
    pub fn name_originals(
        &mut self,
        lookup: impl Fn(CandidateId) -> (Option<String>, Option<String>),
    ) {
        let fill = |p: &mut PackageRef| {
            let (name, version) = lookup(p.id);
            p.original_name = name;
            p.original_version = version;
        };
        for c in &mut self.changes {
            match c {
                Change::Install { package } | Change::Remove { package, .. } => fill(package),
                Change::Upgrade { from, to } | Change::Downgrade { from, to } => {
                    fill(from);
                    fill(to);
                }
            }
        }
        for p in &mut self.result {
            fill(p);
        }
    }

    pub(crate) fn new(universe: &Universe, request: &Request, chosen: &[usize]) -> Plan {
        let pool = &universe.pool;
        let cands = &pool.solvables;
        let installed = |i: usize| matches!(pool.origin(&cands[i]), Origin::Installed { .. });
        let chosen_set: HashSet<usize> = chosen.iter().copied().collect();
        let mut added: Vec<usize> = chosen
            .iter()
            .copied()
            .filter(|&i| matches!(pool.origin(&cands[i]), Origin::Available { .. }))
            .collect();
        let removed: Vec<usize> = (0..cands.len())
            .filter(|&i| installed(i) && !chosen_set.contains(&i))
            .collect();
        let major = |i: usize| &pool.version(cands[i].version).major;
        let mut changes = Vec::new();
        for &r in &removed {
            let old = &cands[r];
            // Pair with an added package of the same name: prefer the same
            // major (an upgrade in place), then any.
            let pos = added
                .iter()
                .position(|&a| cands[a].name == old.name && major(a) == major(r))
                .or_else(|| added.iter().position(|&a| cands[a].name == old.name));
            if let Some(pos) = pos {
                let new = &cands[added.remove(pos)];
                let (from, to) = (PackageRef::of(pool, old), PackageRef::of(pool, new));
                changes.push(
                    if pool
                        .version(new.version)
                        .compare(pool.version(old.version))
                        .is_lt()
                    {
                        Change::Downgrade { from, to }
                    } else {
                        Change::Upgrade { from, to }
                    },
                );
                continue;
            }
            changes.push(Change::Remove {
                package: PackageRef::of(pool, old),
                reason: removal_reason(pool, request, r, chosen),
            });
        }
        changes.extend(added.iter().map(|&a| Change::Install {
            package: PackageRef::of(pool, &cands[a]),
        }));
        changes.sort_by(|a, b| {
            let (a, b) = (change_key(a), change_key(b));
            a.name.cmp(&b.name).then(a.version.compare(&b.version))
        });
        let mut result: Vec<PackageRef> = chosen
            .iter()
            .filter(|&&i| *pool.origin(&cands[i]) != Origin::Host)
            .map(|&i| PackageRef::of(pool, &cands[i]))
            .collect();
        result.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.compare(&b.version)));
        Plan { changes, result }
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

fn change_key(c: &Change) -> &PackageRef {
    match c {
        Change::Install { package } => package,
        Change::Upgrade { from, .. } | Change::Downgrade { from, .. } => from,
        Change::Remove { package, .. } => package,
    }
}

fn removal_reason(
    pool: &Pool,
    request: &Request,
    removed: usize,
    chosen: &[usize],
) -> RemovalReason {
    let cands = &pool.solvables;
    let old = &cands[removed];
    if let Request::Remove(names) = request {
        if names.iter().any(|n| n == pool.name(old.name)) {
            return RemovalReason::Requested;
        }
    }
    let text = |s: &Solvable| format!("{} {}", pool.name(s.name), pool.version(s.version));
    for &c in chosen {
        let new = &cands[c];
        if pool.replaces(new).contains(&old.name) {
            return RemovalReason::ReplacedBy(text(new));
        }
        let conflicts = |a: &Solvable, b: &Solvable| {
            pool.conflicts(a)
                .iter()
                .any(|&d| pool.provides(b).iter().any(|p| pool.conflicts_with(d, p)))
        };
        if conflicts(new, old) || conflicts(old, new) {
            return RemovalReason::ConflictsWith(text(new));
        }
    }
    let provided = |dep: &crate::pool::DepRec| {
        chosen
            .iter()
            .any(|&c| pool.provides(&cands[c]).iter().any(|p| pool.meets(*dep, p)))
    };
    for alternatives in pool.requires(old) {
        if !alternatives.iter().any(provided) {
            let text: Vec<String> = alternatives.iter().map(|&d| pool.dep_text(d)).collect();
            return RemovalReason::Unmet(text.join(" | "));
        }
    }
    for u in pool.uses(old) {
        if !provided(u) {
            return RemovalReason::Unmet(pool.dep_text(*u));
        }
    }
    RemovalReason::Displaced
}
