//! A change, from request to plan: the installed packages and the offered
//! files become resolver candidates (each with a typed [`CandidateId`]
//! that maps it back to its state entry or its file), the resolver
//! computes a consistent set, and the [`Plan`] says what the switch will do
//! — including what it removes that nobody asked for and which essential
//! packages it touches, so a front end can ask first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use exos_manifest::{Manifest, Provide};
use exos_repo::OfferedPackage;
use exos_resolve::{Candidate, CandidateId, Change, Origin, PackageRef, ResolveError, Universe};
use exos_root::pkgdb::{PackageDb, RepoOrigin};
use exos_root::{Layer, PackageFile, StateEntry, StateList};
use exos_trust::TrustStore;
use std::sync::Arc;

use crate::offer::{installed, offers, Known};
use crate::plan::{FromRepository, PackageName, Plan};
use crate::root::{diff, NewPackage, Root};
use crate::{Error, Result};

/// What to change.
#[derive(Debug, Clone)]
pub enum Request {
    /// Install exactly these package files into `layer`.
    Install {
        /// The package files.
        files: Vec<PathBuf>,
        /// The layer they go to.
        layer: Layer,
    },
    /// Remove installed packages by name, with what can no longer work.
    Remove {
        /// The package names.
        names: Vec<String>,
    },
    /// Move the named installed packages (all when empty) to newer releases
    /// from the available files; packages newly needed go to `layer`.
    Upgrade {
        /// The package names (all installed ones when empty).
        names: Vec<String>,
        /// Where newly needed packages go.
        layer: Layer,
    },
    /// Install packages by name and version range, from the available
    /// files and the remote packages, into `layer`.
    InstallNames {
        /// The names and ranges asked for.
        names: Vec<exos_manifest::Dependency>,
        /// The layer they go to.
        layer: Layer,
    },
    /// Remove the automatic packages nothing kept needs any more (each
    /// removal needs consent: the request names none of them).
    Autoremove,
}

impl Request {
    /// One line saying what was asked (files as given, names as written).
    pub fn describe(&self) -> String {
        let join = |v: Vec<String>| v.join(", ");
        match self {
            Request::Install { files, .. } => format!(
                "install {}",
                join(files.iter().map(|f| f.display().to_string()).collect())
            ),
            Request::InstallNames { names, .. } => {
                format!(
                    "install {}",
                    join(names.iter().map(|d| d.to_string()).collect())
                )
            }
            Request::Remove { names } => format!("remove {}", names.join(", ")),
            Request::Autoremove => "autoremove".into(),
            Request::Upgrade { names, .. } if names.is_empty() => "upgrade".into(),
            Request::Upgrade { names, .. } => format!("upgrade {}", names.join(", ")),
        }
    }
}

/// A change to plan against a root.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// What to change.
    pub request: Request,
    /// Package files, or directories of them, that may be installed to
    /// satisfy the request.
    pub available: Vec<PathBuf>,
    /// APIs the host provides (for `uses`).
    pub host_apis: Vec<Provide>,
    /// Apply exactly what was asked, without resolving dependencies.
    pub force: bool,
    /// Packages repositories offer.
    pub remote: Vec<OfferedPackage>,
    /// Keys encrypted package files offered may be opened with.
    pub keys: exos_hpkg::crypt::KeyRing,
    /// Packages (by name) to take from this repository, whatever their
    /// installed origin (`exos install REPO/NAME`, `--from REPO`).
    pub from: BTreeMap<String, String>,
    /// The request as the user typed it, for the state's history (an
    /// imported package's Debian name and range rather than their
    /// mapping); `None`: described from the request.
    pub typed: Option<String>,
}

impl Transaction {
    /// One line describing the request, for the state's history.
    fn describe(&self, offered: &[Known]) -> String {
        if let Some(typed) = &self.typed {
            return typed.clone();
        }
        match &self.request {
            Request::Install { .. } => format!(
                "install {}",
                offered
                    .iter()
                    .map(|k| PackageName::of(&k.manifest).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            r => r.describe(),
        }
    }

    /// Computes what the change would do to `root`'s current state.
    pub fn plan(&self, root: &Root) -> Result<Plan> {
        let current = root.current()?;
        let trust = TrustStore::read(&root.layout)?;
        // A user's change resolves against the shared layers too, which it
        // never changes.
        let base = root.shared_base()?;
        let mut installed_now = installed(root, &current)?;
        if !base.is_empty() {
            let shared = Root::read_only_layout(root.layout.shared())?;
            // One by one: a shared package whose manifest a user may not
            // read (a sealed one's is root's) is left out, not fatal.
            installed_now.extend(
                crate::offer::installed_each(&shared, &base)
                    .into_iter()
                    .filter_map(|found| found.ok()),
            );
        }
        // Sets for the membership tests below: a root holds thousands of
        // packages, and scanning the lists per package was quadratic.
        let in_base: HashSet<&StateEntry> = base.iter().collect();
        let base_names: BTreeSet<String> = installed_now
            .iter()
            .filter(|(e, _)| in_base.contains(e))
            .map(|(_, m)| m.name.clone())
            .collect();
        let requested = match &self.request {
            Request::Install { files, layer } => offers(files, *layer, &trust, true, &self.keys)?,
            _ => Vec::new(),
        };
        // Room for what is added below: grown later, the list of
        // thousands of installed packages would be moved whole.
        let room = installed_now.len() + requested.len() + self.available.len();
        let mut known: Vec<Known> = Vec::with_capacity(room);
        known.extend(installed_now.into_iter().map(|(entry, manifest)| Known {
            manifest,
            entry: Some(entry),
            new: None,
            remote: None,
        }));
        // A package taken from another origin on request replaces the
        // installed one: the installed one is no candidate.
        let db = PackageDb::read(&root.layout.package_db())?;
        let switching = |k: &Known| {
            let Some(repo) = self.from.get(&k.manifest.name) else {
                return false;
            };
            let origin = k.entry.as_ref().and_then(|e| db.origin(&e.sha256));
            origin.is_none_or(|o| &o.repository != repo)
        };
        // Without `--from` nothing switches: the installed packages stay
        // where they are (moving 10,000 of them into a new list took a
        // tenth of an install).
        let (switched, mut known): (Vec<Known>, Vec<Known>) = if self.from.is_empty() {
            (Vec::new(), known)
        } else {
            known.into_iter().partition(switching)
        };
        let change = self.describe(&requested);
        let requested_ids: Vec<usize> = (known.len()..known.len() + requested.len()).collect();
        let installed_names: BTreeSet<String> = known
            .iter()
            .filter(|k| k.entry.is_some())
            .map(|k| k.manifest.name.clone())
            .collect();
        let held = |name: &str| installed_names.contains(name) && db.holds.contains_key(name);
        let mut held_asked: Vec<String> = requested
            .iter()
            .map(|k| k.manifest.name.clone())
            .filter(|n| held(n))
            .collect();
        if let Request::Remove { names } = &self.request {
            held_asked.extend(names.iter().filter(|n| held(n)).cloned());
        }
        if !held_asked.is_empty() {
            return Err(Error::Held(held_asked));
        }
        known.extend(requested);
        let offers_start = known.len();
        let extra_layer = match &self.request {
            Request::Install { layer, .. }
            | Request::Upgrade { layer, .. }
            | Request::InstallNames { layer, .. } => *layer,
            Request::Remove { .. } | Request::Autoremove => Layer::System,
        };
        known.extend(offers(
            &self.available,
            extra_layer,
            &trust,
            false,
            &self.keys,
        )?);
        // Remote packages that would not pass the layer's policy once
        // downloaded are not candidates either; nor are those installed
        // already in that layer (the same bytes: nothing to download); nor
        // those of another origin than the installed package's.
        let (eligible, notes) = self.eligible_remotes(&known, &db);
        known.extend(
            eligible
                .into_iter()
                .filter(|r| r.entry.signed || !trust.requires_signature(extra_layer))
                .filter(|r| {
                    !current
                        .entries
                        .iter()
                        .any(|e| e.sha256 == r.sha256() && e.layer == extra_layer)
                })
                .map(|r| {
                    Ok(Known {
                        manifest: Arc::new(r.manifest.clone()),
                        entry: None,
                        new: Some(NewPackage {
                            source: root.layout.download(&r.sha256()),
                            layer: extra_layer,
                            file: PackageFile::new(r.file()).map_err(|e| {
                                Error::invalid(
                                    format!("{}: {}", r.origin.repository, r.file()),
                                    e.to_string(),
                                )
                            })?,
                            sha256: r.sha256(),
                            size: r.size(),
                            signature: None,
                            manifest: None,
                        }),
                        remote: Some(r.clone()),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        );

        // A held package keeps its installed release, or moves only within
        // its hold's range: other releases are no candidates.
        let mut notes = notes;
        let offered = known.split_off(offers_start);
        for k in offered {
            let name = &k.manifest.name;
            if base_names.contains(name) {
                // The shared layers are root's to upgrade.
                continue;
            }
            let allowed = match db.holds.get(name) {
                Some(range) if installed_names.contains(name) => {
                    !range.is_empty()
                        && exos_manifest::VersionRange::parse(range)
                            .is_ok_and(|r| r.matches(Some(&k.manifest.version), None))
                }
                _ => true,
            };
            if allowed {
                known.push(k);
            } else {
                let note = format!("{name} is held: {name} {} not taken", k.manifest.version);
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        let (target, resolution) = if self.force {
            let with_base = StateList {
                entries: current.entries.iter().chain(&base).cloned().collect(),
                ..current.clone()
            };
            (
                self.forced_target(&with_base, &known, &requested_ids)?,
                None,
            )
        } else {
            // Automatic packages nothing kept needs (`exos autoremove`).
            let unneeded = match self.request {
                Request::Autoremove => {
                    let installed: Vec<&exos_manifest::Manifest> = known
                        .iter()
                        .filter(|k| k.entry.is_some())
                        .map(|k| &*k.manifest)
                        .collect();
                    let keep: Vec<bool> = installed
                        .iter()
                        .map(|m| !db.automatic.contains(&m.name) || held(&m.name))
                        .collect();
                    crate::query::unneeded(&installed, &keep)
                }
                _ => Vec::new(),
            };
            let (target, mut plan) = self.resolved_target(&known, &requested_ids, &unneeded)?;
            plan.name_originals(|id| {
                known.get(id.0 as usize).map_or((None, None), |k| {
                    (
                        k.manifest.original_name.clone(),
                        k.manifest.original_version.clone(),
                    )
                })
            });
            for c in &mut plan.changes {
                if let Change::Remove { reason, .. } = c {
                    if matches!(self.request, Request::Autoremove)
                        && *reason == exos_resolve::RemovalReason::Requested
                    {
                        *reason = exos_resolve::RemovalReason::Unneeded;
                    }
                }
            }
            show_switches(&mut plan, &switched);
            (target, Some(plan))
        };
        // A user's change keeps every shared package as it is, and its
        // states list only the user's own layer.
        let target = if base.is_empty() {
            target
        } else {
            let in_target: HashSet<&StateEntry> = target.iter().collect();
            if let Some(gone) = base.iter().find(|e| !in_target.contains(e)) {
                let package = known
                    .iter()
                    .find(|k| k.entry.as_ref() == Some(gone))
                    .map_or_else(
                        || gone.file.to_string(),
                        |k| PackageName::of(&k.manifest).to_string(),
                    );
                return Err(Error::SharedPackage {
                    package,
                    layer: gone.layer,
                });
            }
            target
                .into_iter()
                .filter(|e| !in_base.contains(e))
                .collect()
        };
        let in_target: HashSet<&StateEntry> = target.iter().collect();
        let in_current: HashSet<&StateEntry> = current.entries.iter().collect();
        // Two packages may not share a file name in one layer.
        let mut seen = HashMap::new();
        for e in &target {
            if let Some(other) = seen.insert((e.layer, e.file.clone()), e.sha256) {
                if other != e.sha256 {
                    return Err(Error::SameFile {
                        layer: e.layer,
                        file: e.file.clone(),
                    });
                }
            }
        }
        // The manifest goes with each package chosen (remembered at the
        // commit when the file turns out to be encrypted).
        let new: Vec<NewPackage> = known
            .iter()
            .filter_map(|k| Some((k.new.as_ref()?, &k.manifest)))
            // Offered again but installed already (the same file in the
            // same place): nothing to copy.
            .filter(|(n, _)| in_target.contains(&n.entry()) && !in_current.contains(&n.entry()))
            .map(|(n, manifest)| NewPackage {
                manifest: Some(Manifest::clone(manifest)),
                ..n.clone()
            })
            .collect();
        if let Some(n) = new
            .iter()
            .find(|n| !root.layout.layers().contains(&n.layer))
        {
            return Err(Error::SharedPackage {
                package: n.file.to_string(),
                layer: n.layer,
            });
        }
        let files = diff(
            &current,
            &StateList {
                entries: target.clone(),
                ..Default::default()
            },
        );
        // What leaves the system: by the resolver's account when it ran,
        // else every installed package no longer in the target.
        struct Leaving<'k> {
            known: &'k Known,
            /// The request named it.
            named: bool,
            /// Another release of it takes its place.
            upgraded: bool,
        }
        let leaving: Vec<Leaving> = known
            .iter()
            .filter(|k| {
                k.entry
                    .as_ref()
                    .is_some_and(|e| !in_target.contains(e) && !in_base.contains(e))
            })
            .map(|k| Leaving {
                known: k,
                named: match &self.request {
                    Request::Remove { names } => names.contains(&k.manifest.name),
                    _ => false,
                },
                upgraded: resolution.as_ref().is_some_and(|p: &exos_resolve::Plan| {
                    p.changes.iter().any(|c| {
                        matches!(c, Change::Upgrade { from, .. } | Change::Downgrade { from, .. }
                            if from.name == k.manifest.name && from.version == k.manifest.version)
                    })
                }) || target_has_name(&in_target, &known, &k.manifest.name),
            })
            .collect();
        let held_leaving: Vec<String> = leaving
            .iter()
            .filter(|l| !l.upgraded && held(&l.known.manifest.name))
            .map(|l| l.known.manifest.name.clone())
            .collect();
        if !held_leaving.is_empty() {
            return Err(Error::Held(held_leaving));
        }
        let name_of = |l: &Leaving| PackageName::of(&l.known.manifest);
        let essential_removed = leaving
            .iter()
            .filter(|l| l.known.manifest.essential && !l.upgraded)
            .map(name_of)
            .collect();
        let also_removed = leaving
            .iter()
            .filter(|l| !l.named && !l.upgraded)
            .map(name_of)
            .collect();
        let downloads: Vec<OfferedPackage> = known
            .iter()
            .filter_map(|k| Some((k.remote.as_ref()?, k.new.as_ref()?)))
            .filter(|(_, n)| in_target.contains(&n.entry()))
            .map(|(r, _)| r.clone())
            .collect();
        let origins = downloads
            .iter()
            .map(|r| FromRepository {
                sha256: r.sha256(),
                package: PackageName::of(&r.manifest),
                origin: r.origin.clone(),
            })
            .collect();
        // Marks: what the request named is manual; what else arrives was
        // pulled in, automatic.
        let target_names: BTreeSet<&str> = known
            .iter()
            .filter(|k| {
                k.entry.as_ref().is_some_and(|e| in_target.contains(e))
                    || k.new
                        .as_ref()
                        .is_some_and(|n| in_target.contains(&n.entry()))
            })
            .map(|k| k.manifest.name.as_str())
            .collect();
        let named: BTreeSet<String> = match &self.request {
            Request::Install { .. } => requested_ids
                .iter()
                .map(|&i| known[i].manifest.name.clone())
                .collect(),
            Request::InstallNames { names, .. } => names.iter().map(|d| d.api.clone()).collect(),
            _ => BTreeSet::new(),
        };
        let automatic = target_names
            .iter()
            .filter(|n| !installed_names.contains(**n) && !named.contains(**n))
            .map(|n| n.to_string())
            .collect();
        let manual = named
            .into_iter()
            .filter(|n| target_names.contains(n.as_str()))
            .collect();
        Ok(Plan {
            automatic,
            manual,
            downloads,
            change,
            resolution,
            bytes_copied: new.iter().map(|n| n.size).sum(),
            files,
            new,
            target,
            essential_removed,
            also_removed,
            lazy: Vec::new(),
            keys: self.keys.clone(),
            origins,
            notes,
        })
    }

    /// The offered remote packages that may be chosen, and notes on those
    /// that may not. A package installed from a repository is upgraded only
    /// from that origin (the repository and its pinned root key), one
    /// installed from a file never from a repository, unless the request
    /// names the repository to take it from ([`Transaction::from`]); a
    /// package not installed comes from the highest-priority repositories
    /// offering it. A newer release from elsewhere is noted, never taken.
    fn eligible_remotes<'r>(
        &'r self,
        known: &[Known],
        db: &PackageDb,
    ) -> (Vec<&'r OfferedPackage>, Vec<String>) {
        let mut installed: BTreeMap<&str, Vec<(Option<&RepoOrigin>, &exos_hpkg::Version)>> =
            BTreeMap::new();
        for k in known {
            if let Some(e) = &k.entry {
                installed
                    .entry(k.manifest.name.as_str())
                    .or_default()
                    .push((db.origin(&e.sha256), &k.manifest.version));
            }
        }
        let mut best: BTreeMap<&str, i32> = BTreeMap::new();
        for r in &self.remote {
            let p = best.entry(r.manifest.name.as_str()).or_insert(r.priority);
            *p = (*p).max(r.priority);
        }
        let mut eligible = Vec::new();
        let mut notes = Vec::new();
        for r in &self.remote {
            let name = r.manifest.name.as_str();
            if let Some(repo) = self.from.get(name) {
                if &r.origin.repository == repo {
                    eligible.push(r);
                }
                continue;
            }
            let Some(have) = installed.get(name) else {
                if best.get(name) == Some(&r.priority) {
                    eligible.push(r);
                }
                continue;
            };
            if have.iter().any(|(o, _)| *o == Some(&r.origin)) {
                eligible.push(r);
                continue;
            }
            let newer = have
                .iter()
                .all(|(_, v)| r.manifest.version.compare(v) == std::cmp::Ordering::Greater);
            if newer {
                let from = match have.iter().find_map(|(o, _)| *o) {
                    Some(o) if o.repository == r.origin.repository => {
                        format!("repository {} with another root key", o.repository)
                    }
                    Some(o) => format!("repository {}", o.repository),
                    None => "a file".to_string(),
                };
                let note = format!(
                    "{name} {} is offered by repository {}, but the installed {name} came from {from}: not taken (exos install {}/{name} to switch)",
                    r.manifest.version, r.origin.repository, r.origin.repository
                );
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        (eligible, notes)
    }

    fn resolved_target(
        &self,
        known: &[Known],
        requested: &[usize],
        unneeded: &[String],
    ) -> Result<(Vec<StateEntry>, exos_resolve::Plan)> {
        let mut candidates: Vec<Candidate> = known
            .iter()
            .enumerate()
            .map(|(i, k)| Candidate {
                manifest: Manifest::clone(&k.manifest),
                origin: match (&k.entry, &k.new) {
                    (Some(e), _) => Origin::Installed {
                        location: format!("{}/{}", e.layer, e.file),
                    },
                    (None, Some(n)) => Origin::Available {
                        source: n.source.display().to_string(),
                    },
                    (None, None) => Origin::Host,
                },
                id: CandidateId(i as u32),
            })
            .collect();
        for h in &self.host_apis {
            candidates.push(exos_resolve::host_api(&h.api, h.version.clone()));
        }
        let request = match &self.request {
            Request::Install { .. } => exos_resolve::Request::InstallExact(
                requested
                    .iter()
                    .map(|&i| {
                        (
                            known[i].manifest.name.clone(),
                            known[i].manifest.version.clone(),
                        )
                    })
                    .collect(),
            ),
            Request::Remove { names } => exos_resolve::Request::Remove(names.clone()),
            Request::Autoremove => exos_resolve::Request::Remove(unneeded.to_vec()),
            Request::Upgrade { names, .. } => exos_resolve::Request::Upgrade(names.clone()),
            Request::InstallNames { names, .. } => exos_resolve::Request::Install(names.clone()),
        };
        let universe = Universe::new(candidates);
        let (plan, _) = exos_resolve::resolve(&universe, &request).map_err(|e| match e {
            e @ ResolveError::Unsatisfiable(_) => Error::Unsatisfiable(e),
            e @ ResolveError::BadRequest(_) => Error::BadRequest(e),
        })?;
        let target = plan
            .result
            .iter()
            .map(|p: &PackageRef| {
                let k = known
                    .get(p.id.0 as usize)
                    .ok_or_else(|| Error::NoFileFor(format!("{} {}", p.name, p.version)))?;
                match (&k.entry, &k.new) {
                    (Some(e), _) => Ok(e.clone()),
                    (None, Some(n)) => Ok(n.entry()),
                    _ => Err(Error::NoFileFor(format!("{} {}", p.name, p.version))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((target, plan))
    }

    /// `force`: exactly the named change, no resolution.
    fn forced_target(
        &self,
        current: &StateList,
        known: &[Known],
        requested: &[usize],
    ) -> Result<Vec<StateEntry>> {
        let mut target = current.entries.clone();
        match &self.request {
            Request::InstallNames { .. } => return Err(Error::ForcedByName),
            Request::Install { .. } => {
                for n in requested.iter().filter_map(|&i| known[i].new.as_ref()) {
                    target.retain(|e| !(e.layer == n.layer && e.file == n.file));
                    target.push(n.entry());
                }
            }
            Request::Remove { names } => {
                for n in names {
                    if !known
                        .iter()
                        .any(|k| k.entry.is_some() && &k.manifest.name == n)
                    {
                        return Err(Error::NotInstalled(n.to_string()));
                    }
                }
                let doomed: Vec<&StateEntry> = known
                    .iter()
                    .filter(|k| names.contains(&k.manifest.name))
                    .filter_map(|k| k.entry.as_ref())
                    .collect();
                target.retain(|e| !doomed.contains(&e));
            }
            Request::Upgrade { .. } | Request::Autoremove => return Err(Error::ForcedUpgrade),
        }
        Ok(target)
    }
}

/// Shows a package taken from another origin in place of the installed
/// one (which was no candidate, so the resolver saw an install) as the
/// upgrade or downgrade it is.
fn show_switches(plan: &mut exos_resolve::Plan, switched: &[Known]) {
    for c in &mut plan.changes {
        let Change::Install { package } = c else {
            continue;
        };
        let Some(old) = switched
            .iter()
            .find(|k| k.manifest.name == package.name && k.entry.is_some())
        else {
            continue;
        };
        let from = PackageRef {
            name: old.manifest.name.clone(),
            version: old.manifest.version.clone(),
            origin: Origin::Installed {
                location: old
                    .entry
                    .as_ref()
                    .map(|e| format!("{}/{}", e.layer, e.file))
                    .unwrap_or_default(),
            },
            original_name: old.manifest.original_name.clone(),
            original_version: old.manifest.original_version.clone(),
            id: package.id,
        };
        let to = package.clone();
        *c = match to.version.compare(&from.version) {
            std::cmp::Ordering::Less => Change::Downgrade { from, to },
            _ => Change::Upgrade { from, to },
        };
    }
}

/// Whether the target keeps a package of this name (another release of
/// it, so it is not removed from the system).
fn target_has_name(target: &HashSet<&StateEntry>, known: &[Known], name: &str) -> bool {
    known.iter().any(|k| {
        k.manifest.name == name
            && match (&k.entry, &k.new) {
                (Some(e), _) => target.contains(e),
                (None, Some(n)) => target.contains(&n.entry()),
                _ => false,
            }
    })
}
