//! A package change, from request to commit: the installed packages and
//! the offered files become resolver candidates (each with a typed
//! [`CandidateId`] that maps it back to its state entry or its file), the
//! resolver computes a consistent set, and the [`Plan`] says what the
//! switch will do — including what it removes that nobody asked for and
//! which essential packages it touches, so a front end can ask first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use exos_hpkg::Package;
use exos_manifest::{Manifest, Provide};
use exos_resolve::{Candidate, CandidateId, Change, Origin, PackageRef, ResolveError, Universe};
use exos_root::{reserved_name, Layer, PackageFile, StateEntry, StateList};

use std::collections::BTreeMap;

use exos_hpkg::crypt::KeyRing;
use exos_root::pkgdb::{PackageDb, RepoOrigin};
use exos_trust::{FileDigest, TrustStore};

use crate::root::{diff, AcceptedSignature, FileChange, NewPackage, Root};
use crate::{Error, Result};

/// What to change.
#[derive(Debug, Clone)]
pub enum Request {
    /// Install exactly these package files into `layer`.
    Install { files: Vec<PathBuf>, layer: Layer },
    /// Remove installed packages by name, with what can no longer work.
    Remove { names: Vec<String> },
    /// Move the named installed packages (all when empty) to newer releases
    /// from the available files; packages newly needed go to `layer`.
    Upgrade { names: Vec<String>, layer: Layer },
    /// Install packages by name and version range, from the available
    /// files and the remote packages, into `layer`.
    InstallNames {
        names: Vec<exos_manifest::Dependency>,
        layer: Layer,
    },
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
            Request::Upgrade { names, .. } if names.is_empty() => "upgrade".into(),
            Request::Upgrade { names, .. } => format!("upgrade {}", names.join(", ")),
        }
    }
}

/// A package a repository offers: known by its signed index entry, not yet
/// downloaded. A plan that chooses it names it in [`Plan::downloads`]; the
/// front end downloads it to `cached` and calls [`Plan::admit_downloads`]
/// before committing.
#[derive(Debug, Clone)]
pub struct Remote {
    pub manifest: Manifest,
    pub file: PackageFile,
    pub sha256: exos_root::Sha256,
    pub size: u64,
    /// Where the download will be.
    pub cached: PathBuf,
    /// The repository and its pinned root key: recorded at the commit, and
    /// what later upgrades of the package stay on.
    pub origin: RepoOrigin,
    /// The repository's priority (`repos.json`): a package not installed
    /// yet comes from the highest-priority repositories offering it.
    pub priority: i32,
    /// Whether the repository publishes a package signature for it.
    pub signed: bool,
    /// Deltas that rebuild it from older versions.
    pub deltas: Vec<exos_repo::metadata::DeltaRef>,
}

impl Plan {
    /// Checks downloaded remote packages as offered files are checked
    /// (every chunk, reserved names, the layer's signature policy) and
    /// that each is the package the index named; records the signatures
    /// accepted. Call after downloading [`Plan::downloads`], before
    /// [`Root::commit`].
    /// `digests`: each download's digests, computed as it arrived.
    pub fn admit_downloads(&mut self, root: &Root, digests: &[FileDigest]) -> Result<()> {
        let trust = TrustStore::read(&root.layout)?;
        for r in &self.downloads {
            let known = digests.iter().find(|d| d.sha256 == r.sha256).copied();
            let Some(n) = self.new.iter_mut().find(|n| n.source == r.cached) else {
                continue;
            };
            let k = offer_checked(&r.cached, n.layer, &trust, false, known, &self.keys)?;
            let got = k.new.expect("offer makes a new package");
            if got.sha256 != r.sha256
                || k.manifest.name != r.manifest.name
                || k.manifest.version != r.manifest.version
            {
                return Err(Error::Invalid(format!(
                    "{} from {}: not the package its index entry describes",
                    r.file, r.origin.repository
                )));
            }
            n.signature = got.signature;
        }
        Ok(())
    }
}

impl Plan {
    /// Installs the plan's downloads lazily: each `maps` entry (record and
    /// block map of one of [`Plan::downloads`], the map checked against
    /// the signed index) is opened through `cache` — its header, TOC and
    /// attributes are fetched and verified block by block — and checked
    /// like a download (reserved names, and that its manifest is the one
    /// the index gave). Nothing is copied for them; the commit records
    /// them instead. Refused in a layer whose policy requires signed
    /// packages: a package signature covers the whole file, which a lazy
    /// install never has.
    pub fn make_lazy(
        &mut self,
        root: &Root,
        maps: Vec<exos_lazy::LazyPackage>,
        cache: &std::sync::Arc<exos_lazy::BlockCache>,
        timeouts: exos_repo::Timeouts,
    ) -> Result<()> {
        let trust = TrustStore::read(&root.layout)?;
        // Each lazy package with the index entry it must match.
        let mut todo = Vec::new();
        for lazy in maps {
            let sha = lazy.record.sha256;
            let Some(r) = self.downloads.iter().find(|r| r.sha256 == sha) else {
                continue;
            };
            let Some(n) = self.new.iter().find(|n| n.sha256 == sha) else {
                continue;
            };
            if trust.requires_signature(n.layer) {
                return Err(Error::Untrusted(format!(
                    "{}: the {} layer accepts only signed packages, and a package signature covers the whole file, which a lazy install does not fetch (install it without --lazy, or `exos trust policy {} any`)",
                    r.file, n.layer, n.layer
                )));
            }
            todo.push((lazy, r.clone()));
        }
        // Each check is a round trip (header and metadata fetched at
        // once): sixteen at a time.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..todo.len().clamp(1, 16))
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((lazy, r)) = todo.get(i) else {
                                return out;
                            };
                            out.push(check_lazy(lazy, r, cache, timeouts));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join().unwrap_or_else(|_| {
                        vec![Err(Error::Invalid("a lazy check panicked".into()))]
                    })
                })
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
        for (lazy, _) in todo {
            if let Some(pos) = self.new.iter().position(|n| n.sha256 == lazy.record.sha256) {
                let n = self.new.remove(pos);
                self.bytes_copied = self.bytes_copied.saturating_sub(n.size);
            }
            self.lazy.push(lazy);
        }
        self.downloads
            .retain(|d| self.new.iter().any(|n| n.sha256 == d.sha256));
        Ok(())
    }
}

/// Opens a lazy package through the block cache (fetching its header,
/// attributes and TOC) and checks it is the package the index described.
fn check_lazy(
    lazy: &exos_lazy::LazyPackage,
    r: &Remote,
    cache: &std::sync::Arc<exos_lazy::BlockCache>,
    timeouts: exos_repo::Timeouts,
) -> Result<()> {
    let source = exos_lazy::RemoteSource::new(lazy.clone(), cache.clone(), timeouts)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let what = format!("{} ({})", r.file, source.url());
    source
        .prefetch_metadata()
        .map_err(|e| Error::Io(what.clone(), e))?;
    let pkg = Package::from_source(source, &what, &exos_hpkg::OpenOptions::default())?;
    if let Some(name) = reserved_name(pkg.toc().root().children().map(|c| c.name())) {
        return Err(Error::Invalid(format!(
            "{what}: contains the top-level entry {name:?}, a name packagefs reserves for the metadata it shows"
        )));
    }
    // Its attributes name the package the index describes (its
    // manifest.json is not read: the index's manifest, signed, is the one
    // kept and used).
    r.manifest.check_against(&pkg)?;
    Ok(())
}

/// A change to plan against a root.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub request: Request,
    /// Package files, or directories of them, that may be installed to
    /// satisfy the request.
    pub available: Vec<PathBuf>,
    /// APIs the host provides (for `uses`).
    pub host_apis: Vec<Provide>,
    /// Apply exactly what was asked, without resolving dependencies.
    pub force: bool,
    /// Packages repositories offer.
    pub remote: Vec<Remote>,
    /// Keys encrypted package files offered may be opened with.
    pub keys: exos_hpkg::crypt::KeyRing,
    /// Packages (by name) to take from this repository, whatever their
    /// installed origin (`exos install REPO/NAME`, `--from REPO`).
    pub from: BTreeMap<String, String>,
}

/// A package a plan takes from a repository.
#[derive(Debug, Clone)]
pub struct FromRepository {
    pub sha256: exos_root::Sha256,
    pub package: PackageName,
    pub origin: RepoOrigin,
}

/// A package as a plan names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageName {
    pub name: String,
    pub version: exos_hpkg::Version,
}

impl std::fmt::Display for PackageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// What a transaction will do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// One line for the state's history, e.g. `install hello 1.0-1`.
    pub change: String,
    /// The resolver's changes; `None` when forced (no resolution).
    pub resolution: Option<exos_resolve::Plan>,
    /// File-level differences from the current state.
    pub files: Vec<FileChange>,
    /// Files to copy in.
    #[serde(skip)]
    pub new: Vec<NewPackage>,
    /// The state after the change.
    #[serde(skip)]
    pub target: Vec<StateEntry>,
    pub bytes_copied: u64,
    /// Essential packages this plan removes (needs `force`).
    pub essential_removed: Vec<PackageName>,
    /// Installed packages removed although the request did not name them
    /// (needs the user's consent).
    pub also_removed: Vec<PackageName>,
    /// Remote packages to download before the commit.
    #[serde(skip)]
    pub downloads: Vec<Remote>,
    /// Remote packages installed lazily instead (see [`Plan::make_lazy`]):
    /// their records are written by [`Root::commit`].
    #[serde(skip)]
    pub lazy: Vec<exos_lazy::LazyPackage>,
    /// The transaction's keys, for checking downloads.
    #[serde(skip)]
    keys: exos_hpkg::crypt::KeyRing,
    /// The packages taken from repositories, and where from (recorded at
    /// the commit).
    #[serde(skip)]
    pub origins: Vec<FromRepository>,
    /// What was offered and not taken, and why (a newer release from
    /// another origin than the installed package's, for one).
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Refuses the plan unless what it needs is given: `force` for removing
    /// essential packages, `yes` for removing what was not asked for.
    pub fn check_consent(&self, yes: bool, force: bool) -> Result<()> {
        if !self.essential_removed.is_empty() && !force {
            return Err(Error::Essential(join(&self.essential_removed)));
        }
        if !self.also_removed.is_empty() && !yes && !force {
            return Err(Error::NeedsConsent(join(&self.also_removed)));
        }
        Ok(())
    }
}

fn join(p: &[PackageName]) -> String {
    p.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A package the transaction knows: installed (with its state entry) or
/// offered (with its file).
struct Known {
    manifest: Manifest,
    entry: Option<StateEntry>,
    new: Option<NewPackage>,
    remote: Option<Remote>,
}

/// The installed packages of a state with their manifests, found where
/// the manager keeps them.
pub fn installed(root: &Root, state: &StateList) -> Result<Vec<(StateEntry, Manifest)>> {
    state
        .entries
        .iter()
        .map(|e| {
            if root.locate(e).is_none() && root.is_lazy(e) {
                // A lazy package's manifest is kept with its record.
                let lazy = exos_lazy::LazyPackage::read(&root.layout, &e.sha256)
                    .map_err(|err| Error::Invalid(err.to_string()))?
                    .ok_or_else(|| {
                        Error::Invalid(format!("{}/{}: lazy record vanished", e.layer, e.file))
                    })?;
                let what = lazy.path.display().to_string();
                let manifest = Manifest::parse(lazy.record.manifest.to_string().as_bytes(), &what)?;
                return Ok((e.clone(), manifest));
            }
            // An encrypted package's, remembered at install (no key needed).
            if let Some(manifest) = crate::root::remembered_manifest(&root.layout, &e.sha256)? {
                return Ok((e.clone(), manifest));
            }
            let path = root.locate(e).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}/{} of the current state is missing (run `exos check`)",
                    e.layer, e.file
                ))
            })?;
            let pkg = Package::open(&path)?;
            Ok((e.clone(), Manifest::from_package(&pkg)?))
        })
        .collect()
}

/// `*.hpkg` files directly inside `dir`, sorted by name.
pub fn package_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::Io(dir.display().to_string(), e))? {
        let path = entry
            .map_err(|e| Error::Io(dir.display().to_string(), e))?
            .path();
        if path.extension().is_some_and(|e| e == "hpkg") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Checks an offered file against the root's trust policy for `layer`:
/// the signature beside it (`FILE.minisig`), kept if a key trusted for the
/// layer made it; required when the layer's policy says so.
fn signature_for(
    path: &Path,
    layer: Layer,
    trust: &TrustStore,
    digest: &FileDigest,
) -> Result<Option<AcceptedSignature>> {
    let sig_path = exos_trust::beside(path);
    let required = trust.requires_signature(layer);
    if !sig_path.exists() {
        if required {
            return Err(Error::Untrusted(format!(
                "{}: unsigned (no {}), and the {layer} layer takes only packages signed by a trusted key",
                path.display(),
                sig_path.display()
            )));
        }
        return Ok(None);
    }
    let text = exos_trust::read_bounded(&sig_path, exos_trust::minisign::MAX_FILE as u64)?;
    let checked = exos_trust::Signature::parse(&text)
        .map_err(|e| format!("{}: {e}", sig_path.display()))
        .and_then(|sig| {
            trust
                .check(layer, &sig, &digest.blake2b)
                .map(|k| k.id.clone())
                .map_err(|e| format!("{}: {e}", path.display()))
        });
    match checked {
        Ok(key) => Ok(Some(AcceptedSignature {
            key,
            text: String::from_utf8_lossy(&text).into_owned(),
        })),
        Err(reason) if required => Err(Error::Untrusted(reason)),
        Err(_) => Ok(None),
    }
}

/// Opens, verifies and describes a package file offered for installation.
fn offer(path: &Path, layer: Layer, trust: &TrustStore, keys: &KeyRing) -> Result<Known> {
    offer_checked(path, layer, trust, true, None, keys)
}

/// `verify_data`: decompress every chunk. Skipped only for downloads whose
/// SHA-256 matched a signed index entry: `exos repo index` verified those
/// exact bytes before signing. `known`: the digests of a download,
/// computed as it arrived (the file is not read again for them).
fn offer_checked(
    path: &Path,
    layer: Layer,
    trust: &TrustStore,
    verify_data: bool,
    known: Option<FileDigest>,
    keys: &KeyRing,
) -> Result<Known> {
    let pkg = Package::open_with(path, &exos_hpkg::OpenOptions::with_keys(keys.clone()))?;
    // Every chunk must decompress: a package with corrupt data would
    // install and then fail reads with EIO.
    if verify_data {
        pkg.verify_data()?;
    }
    if let Some(name) = reserved_name(pkg.toc().root().children().map(|c| c.name())) {
        return Err(Error::Invalid(format!(
            "{}: contains the top-level entry {name:?}, a name packagefs reserves for the metadata it shows",
            path.display()
        )));
    }
    let manifest = Manifest::from_package(&pkg)?;
    // The BLAKE2b digest a signature covers only when one must be checked.
    // A signature beside the file is checked (and kept when a key trusted
    // for the layer made it) whatever the policy, so turning a layer's
    // policy to `signed` later keeps what was installed signed; the
    // BLAKE2b digest it covers is computed only then.
    let has_signature = exos_trust::beside(path).exists();
    let digest = match known {
        Some(d) => Some(d),
        None if has_signature || trust.requires_signature(layer) => {
            Some(FileDigest::of_file(path).map_err(|e| Error::Io(path.display().to_string(), e))?)
        }
        None => None,
    };
    let (sha256, size, signature) = match digest {
        Some(d) => (d.sha256, d.size, signature_for(path, layer, trust, &d)?),
        None => {
            let sha = exos_root::Sha256::of_file(path)
                .map_err(|e| Error::Io(path.display().to_string(), e))?;
            let size = std::fs::metadata(path)
                .map_err(|e| Error::Io(path.display().to_string(), e))?
                .len();
            (sha, size, None)
        }
    };
    let file = path
        .file_name()
        .and_then(|n| PackageFile::new(n.to_string_lossy()).ok())
        .or_else(|| PackageFile::new(pkg.info().canonical_file_name()).ok())
        .ok_or_else(|| {
            Error::Invalid(format!("{}: no usable package file name", path.display()))
        })?;
    Ok(Known {
        manifest,
        entry: None,
        remote: None,
        new: Some(NewPackage {
            source: path.to_path_buf(),
            layer,
            file,
            sha256,
            size,
            signature,
            manifest: None,
        }),
    })
}

/// Offers files and directories of them. Requested files must pass the
/// trust policy; merely available ones that do not are left out (they are
/// not candidates, as apt ignores packages from untrusted sources).
fn offers(
    paths: &[PathBuf],
    layer: Layer,
    trust: &TrustStore,
    requested: bool,
    keys: &KeyRing,
) -> Result<Vec<Known>> {
    let mut out = Vec::new();
    let mut add = |f: &Path| match offer(f, layer, trust, keys) {
        Err(Error::Untrusted(_)) if !requested => Ok(()),
        r => r.map(|k| out.push(k)),
    };
    for p in paths {
        if p.is_dir() {
            for f in package_files(p)? {
                add(&f)?;
            }
        } else {
            add(p)?;
        }
    }
    Ok(out)
}

impl Transaction {
    /// One line describing the request, for the state's history.
    fn describe(&self, offered: &[Known]) -> String {
        match &self.request {
            Request::Install { .. } => format!(
                "install {}",
                offered
                    .iter()
                    .map(|k| format!("{} {}", k.manifest.name, k.manifest.version))
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
        let known: Vec<Known> = installed(root, &current)?
            .into_iter()
            .map(|(entry, manifest)| Known {
                manifest,
                entry: Some(entry),
                new: None,
                remote: None,
            })
            .collect();
        // A package taken from another origin on request replaces the
        // installed one: the installed one is no candidate.
        let db = PackageDb::read(&root.layout.package_db())?;
        let (switched, kept): (Vec<Known>, Vec<Known>) = known.into_iter().partition(|k| {
            let Some(repo) = self.from.get(&k.manifest.name) else {
                return false;
            };
            let origin = k.entry.as_ref().and_then(|e| db.origin(&e.sha256));
            origin.is_none_or(|o| &o.repository != repo)
        });
        let mut known = kept;
        let requested = match &self.request {
            Request::Install { files, layer } => offers(files, *layer, &trust, true, &self.keys)?,
            _ => Vec::new(),
        };
        let change = self.describe(&requested);
        let requested_ids: Vec<usize> = (known.len()..known.len() + requested.len()).collect();
        known.extend(requested);
        let extra_layer = match &self.request {
            Request::Install { layer, .. }
            | Request::Upgrade { layer, .. }
            | Request::InstallNames { layer, .. } => *layer,
            Request::Remove { .. } => Layer::System,
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
                .filter(|r| r.signed || !trust.requires_signature(extra_layer))
                .filter(|r| {
                    !current
                        .entries
                        .iter()
                        .any(|e| e.sha256 == r.sha256 && e.layer == extra_layer)
                })
                .map(|r| Known {
                    manifest: r.manifest.clone(),
                    entry: None,
                    new: Some(NewPackage {
                        source: r.cached.clone(),
                        layer: extra_layer,
                        file: r.file.clone(),
                        sha256: r.sha256,
                        size: r.size,
                        signature: None,
                        manifest: None,
                    }),
                    remote: Some(r.clone()),
                }),
        );

        let (target, resolution) = if self.force {
            (self.forced_target(&current, &known, &requested_ids)?, None)
        } else {
            let (target, mut plan) = self.resolved_target(&known, &requested_ids)?;
            show_switches(&mut plan, &switched);
            (target, Some(plan))
        };
        // Two packages may not share a file name in one layer.
        let mut seen = HashMap::new();
        for e in &target {
            if let Some(other) = seen.insert((e.layer, e.file.clone()), e.sha256) {
                if other != e.sha256 {
                    return Err(Error::Invalid(format!(
                        "two packages would both be {}/{}",
                        e.layer, e.file
                    )));
                }
            }
        }
        // The manifest goes with each package chosen (remembered at the
        // commit when the file turns out to be encrypted).
        let new: Vec<NewPackage> = known
            .iter()
            .filter_map(|k| Some((k.new.as_ref()?, &k.manifest)))
            .filter(|(n, _)| target.contains(&n.entry()))
            .map(|(n, manifest)| NewPackage {
                manifest: Some(manifest.clone()),
                ..n.clone()
            })
            .collect();
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
            .filter(|k| k.entry.as_ref().is_some_and(|e| !target.contains(e)))
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
                }) || target_has_name(&target, &known, &k.manifest.name),
            })
            .collect();
        let name_of = |l: &Leaving| PackageName {
            name: l.known.manifest.name.clone(),
            version: l.known.manifest.version.clone(),
        };
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
        let downloads: Vec<Remote> = known
            .iter()
            .filter_map(|k| Some((k.remote.as_ref()?, k.new.as_ref()?)))
            .filter(|(_, n)| target.contains(&n.entry()))
            .map(|(r, _)| r.clone())
            .collect();
        let origins = downloads
            .iter()
            .map(|r| FromRepository {
                sha256: r.sha256,
                package: PackageName {
                    name: r.manifest.name.clone(),
                    version: r.manifest.version.clone(),
                },
                origin: r.origin.clone(),
            })
            .collect();
        Ok(Plan {
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
    ) -> (Vec<&'r Remote>, Vec<String>) {
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
    ) -> Result<(Vec<StateEntry>, exos_resolve::Plan)> {
        let mut candidates: Vec<Candidate> = known
            .iter()
            .enumerate()
            .map(|(i, k)| Candidate {
                manifest: k.manifest.clone(),
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
            Request::Upgrade { names, .. } => exos_resolve::Request::Upgrade(names.clone()),
            Request::InstallNames { names, .. } => exos_resolve::Request::Install(names.clone()),
        };
        let universe = Universe::new(candidates);
        let (plan, _) = exos_resolve::resolve(&universe, &request).map_err(|e| match e {
            e @ ResolveError::Unsatisfiable(_) => Error::Unsatisfiable(e),
            ResolveError::BadRequest(m) => Error::Invalid(m),
        })?;
        let target = plan
            .result
            .iter()
            .map(|p: &PackageRef| {
                let k = known.get(p.id.0 as usize).ok_or_else(|| {
                    Error::Invalid(format!("{} {}: no package file for it", p.name, p.version))
                })?;
                match (&k.entry, &k.new) {
                    (Some(e), _) => Ok(e.clone()),
                    (None, Some(n)) => Ok(n.entry()),
                    _ => Err(Error::Invalid(format!(
                        "{} {}: no package file for it",
                        p.name, p.version
                    ))),
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
            Request::InstallNames { .. } => {
                return Err(Error::Invalid(
                    "--force applies exactly the files named; installing by name needs the resolver (drop --force)".into(),
                ))
            }
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
                        return Err(Error::Invalid(format!(
                            "{n} is not installed, so it cannot be removed"
                        )));
                    }
                }
                let doomed: Vec<&StateEntry> = known
                    .iter()
                    .filter(|k| names.contains(&k.manifest.name))
                    .filter_map(|k| k.entry.as_ref())
                    .collect();
                target.retain(|e| !doomed.contains(&e));
            }
            Request::Upgrade { .. } => {
                return Err(Error::Invalid(
                    "upgrade cannot be forced: it needs a consistent plan".into(),
                ))
            }
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
fn target_has_name(target: &[StateEntry], known: &[Known], name: &str) -> bool {
    known.iter().any(|k| {
        k.manifest.name == name
            && match (&k.entry, &k.new) {
                (Some(e), _) => target.contains(e),
                (None, Some(n)) => target.contains(&n.entry()),
                _ => false,
            }
    })
}

impl Root {
    /// Carries out a plan (after [`Plan::check_consent`]): stores the new
    /// files, writes and commits the new state. Returns its number.
    pub fn commit(&self, plan: &Plan) -> Result<u64> {
        // Lazy records first: a state may name them only once they exist
        // (an interrupted install leaves records no state names; gc
        // removes them).
        for lazy in &plan.lazy {
            lazy.write(&self.layout)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            exos_root::crash_point();
        }
        let origins: Vec<_> = plan
            .origins
            .iter()
            .map(|f| (f.sha256, f.origin.clone()))
            .collect();
        self.record_origins(&origins)?;
        self.switch(plan.target.clone(), &plan.new, &plan.change)
    }
}
