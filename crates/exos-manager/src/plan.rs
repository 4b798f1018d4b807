//! What a transaction will do ([`Plan`]), and what must happen to it
//! before it is committed: consent, lazy installs, and the admission of
//! its downloads ([`AdmittedPlan`]: the only plan a commit takes).

use std::collections::BTreeMap;

use exos_hpkg::Package;
use exos_repo::OfferedPackage;
use exos_root::pkgdb::RepoOrigin;
use exos_root::{reserved_name, Layer, StateEntry};
use exos_trust::{FileDigest, TrustStore};

use crate::offer::offer_checked;
use crate::root::{FileChange, NewPackage, Root};
use crate::{Error, Result};

/// A package a plan takes from a repository.
#[derive(Debug, Clone)]
pub struct FromRepository {
    /// The package's SHA-256.
    pub sha256: exos_root::Sha256,
    /// Its name and version.
    pub package: PackageName,
    /// The repository and its root key, recorded in `packages.json`.
    pub origin: RepoOrigin,
}

/// A package as a plan names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageName {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: exos_hpkg::Version,
    /// The name as the package's origin wrote it (an imported Debian
    /// package's), when mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
    /// The version as the package's origin wrote it, when mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_version: Option<String>,
}

impl PackageName {
    /// The name and version of `m`, with its origin's when it has them.
    pub fn of(m: &exos_manifest::Manifest) -> PackageName {
        PackageName {
            name: m.name.clone(),
            version: m.version.clone(),
            original_name: m.original_name.clone(),
            original_version: m.original_version.clone(),
        }
    }
}

/// As people know the package: its origin's name and version if mapped.
impl std::fmt::Display for PackageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.original_name.as_deref().unwrap_or(&self.name);
        match &self.original_version {
            Some(v) => write!(f, "{name} {v}"),
            None => write!(f, "{name} {}", self.version),
        }
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
    /// Bytes of new package files copied into the root.
    pub bytes_copied: u64,
    /// Essential packages this plan removes (needs `force`).
    pub essential_removed: Vec<PackageName>,
    /// Installed packages removed although the request did not name them
    /// (needs the user's consent).
    pub also_removed: Vec<PackageName>,
    /// Remote packages to download before the commit.
    #[serde(skip)]
    pub downloads: Vec<OfferedPackage>,
    /// Remote packages installed lazily instead (see [`Plan::make_lazy`]):
    /// their records are written by [`Root::commit`].
    #[serde(skip)]
    pub lazy: Vec<exos_lazy::LazyPackage>,
    /// The transaction's keys, for checking downloads.
    #[serde(skip)]
    pub(crate) keys: exos_hpkg::crypt::KeyRing,
    /// The packages taken from repositories, and where from (recorded at
    /// the commit).
    #[serde(skip)]
    pub origins: Vec<FromRepository>,
    /// What was offered and not taken, and why (a newer release from
    /// another origin than the installed package's, a held package's).
    pub notes: Vec<String>,
    /// Packages this plan installs only because others need them: marked
    /// automatic at the commit (`exos autoremove` removes them once nothing
    /// needs them).
    pub automatic: Vec<String>,
    /// Packages the request named: marked manual at the commit.
    #[serde(skip)]
    pub manual: Vec<String>,
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

impl Plan {
    /// Top-level names that one package of a layer has as a directory and
    /// another as a file or symlink, where the plan brings one of them in:
    /// mounts show the directory (see exos-packagefs's overlay rule), so
    /// the other package's entry is hidden. One sentence each, naming both
    /// packages. Packages whose files are not here yet (lazy ones) are
    /// left out.
    pub fn layer_clashes(&self, root: &Root) -> Vec<String> {
        let options = exos_hpkg::OpenOptions::with_keys(self.keys.clone());
        /// A package holding a top-level name.
        struct Holder {
            package: String,
            is_dir: bool,
            new: bool,
        }
        // By the names' bytes: two names shown alike may differ.
        let mut tops: BTreeMap<(Layer, Vec<u8>), Vec<Holder>> = BTreeMap::new();
        let (holdings, index) = (root.holdings(), root.index());
        for e in &self.target {
            let new = self.new.iter().find(|n| n.entry() == *e);
            let path = match new {
                Some(n) if n.source.is_file() => Some(n.source.clone()),
                _ => holdings.locate(e),
            };
            // The index's top-level names, else the package's own.
            let indexed = index
                .get(&e.sha256)
                .filter(|_| new.is_none() && path.is_some());
            let (package, names): (String, Vec<(Vec<u8>, bool)>) = match indexed {
                Some(indexed) => (
                    indexed.manifest.name.clone(),
                    indexed
                        .tops
                        .iter()
                        .map(|t| (t.name.as_bytes().to_vec(), t.dir))
                        .collect(),
                ),
                None => {
                    let Some(pkg) = path.and_then(|p| Package::open_with(&p, &options).ok()) else {
                        continue;
                    };
                    let names = pkg
                        .toc()
                        .root()
                        .children()
                        .filter(|c| !exos_manifest::METADATA_FILES.contains(&&*c.name()))
                        .map(|c| (c.name_bytes().to_vec(), c.is_dir()))
                        .collect();
                    (pkg.info().name.clone(), names)
                }
            };
            for (name, is_dir) in names {
                tops.entry((e.layer, name)).or_default().push(Holder {
                    package: package.clone(),
                    is_dir,
                    new: new.is_some(),
                });
            }
        }
        let mut out = Vec::new();
        for ((layer, top), holders) in tops {
            let dir = holders.iter().find(|h| h.is_dir);
            let other = holders.iter().find(|h| !h.is_dir);
            if let (Some(d), Some(o)) = (dir, other) {
                if d.package != o.package && (d.new || o.new) {
                    let top = String::from_utf8_lossy(&top);
                    out.push(format!(
                        "{layer}/{top}: a directory in {} and a file or link in {}; mounts show the directory, so {}'s {top} is hidden",
                        d.package, o.package, o.package
                    ));
                }
            }
        }
        out
    }

    /// Checks the downloads of [`Plan::downloads`] as offered files are
    /// checked (every chunk, reserved names, the layer's signature policy)
    /// and that each is the package the index named, and records the
    /// signatures accepted: only a plan admitted so can be committed
    /// ([`Root::commit`]). `digests`: each download's digests, computed as
    /// it arrived. A plan without downloads is admitted as it is.
    pub fn admit_downloads(mut self, root: &Root, digests: &[FileDigest]) -> Result<AdmittedPlan> {
        let trust = TrustStore::read(&root.layout)?;
        for r in &self.downloads {
            let cached = root.layout.download(&r.sha256());
            let known = digests.iter().find(|d| d.sha256 == r.sha256()).copied();
            let Some(n) = self.new.iter_mut().find(|n| n.source == cached) else {
                continue;
            };
            let k = offer_checked(&cached, n.layer, &trust, false, known, &self.keys)?;
            let got = k.new.expect("offer makes a new package");
            if got.sha256 != r.sha256()
                || k.manifest.name != r.manifest.name
                || k.manifest.version != r.manifest.version
            {
                return Err(Error::NotTheIndexedPackage {
                    file: r.file().to_string(),
                    repository: r.origin.repository.clone(),
                });
            }
            n.signature = got.signature;
        }
        Ok(AdmittedPlan(self))
    }
}

/// A plan whose downloads were checked ([`Plan::admit_downloads`]): the
/// only kind [`Root::commit`] takes.
#[derive(Debug, Clone)]
pub struct AdmittedPlan(Plan);

impl AdmittedPlan {
    /// The plan that was admitted.
    pub fn plan(&self) -> &Plan {
        &self.0
    }
}

impl std::ops::Deref for AdmittedPlan {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.0
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
            let Some(r) = self.downloads.iter().find(|r| r.sha256() == sha) else {
                continue;
            };
            let Some(n) = self.new.iter().find(|n| n.sha256 == sha) else {
                continue;
            };
            if trust.requires_signature(n.layer) {
                return Err(crate::Distrust::LazyInSignedLayer {
                    file: r.file().to_string(),
                    layer: n.layer,
                }
                .into());
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
                    w.join()
                        .unwrap_or_else(|_| vec![Err(Error::Panicked("lazy check"))])
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
            .retain(|d| self.new.iter().any(|n| n.sha256 == d.sha256()));
        Ok(())
    }
}

/// Opens a lazy package through the block cache (fetching its header,
/// attributes and TOC) and checks it is the package the index described.
fn check_lazy(
    lazy: &exos_lazy::LazyPackage,
    r: &OfferedPackage,
    cache: &std::sync::Arc<exos_lazy::BlockCache>,
    timeouts: exos_repo::Timeouts,
) -> Result<()> {
    let source = exos_lazy::RemoteSource::new(lazy.clone(), cache.clone(), timeouts)?;
    let what = format!("{} ({})", r.file(), source.url());
    source
        .prefetch_metadata()
        .map_err(|e| Error::invalid(&what, format!("reading its metadata: {e}")))?;
    let pkg = Package::from_source(source, &what, &exos_hpkg::OpenOptions::default())?;
    if let Some(name) = reserved_name(pkg.toc().root().children().map(|c| c.name_bytes())) {
        return Err(Error::invalid(
            what,
            format!("contains the top-level entry {name:?}, a name packagefs reserves for the metadata it shows"),
        ));
    }
    // Its attributes name the package the index describes (its
    // manifest.json is not read: the index's manifest, signed, is the one
    // kept and used).
    r.manifest.check_against(&pkg)?;
    Ok(())
}
