//! Questions about what a root has installed — apt's `list --installed`,
//! `show`, dpkg's `-L` and `-S`, `rdepends`, dnf's `history` — answered
//! from the current state, the packages themselves and `packages.json`.
//! Nothing here changes the root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use exos_hpkg::{EntryKind, Package};
use exos_manifest::{Dependency, Manifest};
use exos_root::pkgdb::{PackageDb, RepoOrigin};
use exos_root::{Layer, PackageFile, Sha256, StateEntry};

use crate::holdings::Holdings;
use crate::index::InstalledIndex;
use crate::{Error, Result, Root};

/// One installed package, with what the root remembers about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstalledPackage {
    /// The layer it is installed in.
    pub layer: Layer,
    /// Its name as packages and requirements use it.
    pub name: String,
    /// Its version, as the user knows it (an imported Debian package's
    /// own version, not the Haiku encoding).
    pub version: String,
    /// One line about it.
    pub summary: String,
    /// Its file in the layer's packages directory.
    pub file: PackageFile,
    /// The file's SHA-256.
    pub sha256: Sha256,
    /// The file's size in bytes.
    pub size: u64,
    /// The repository it came from; `None` for a file installed by path.
    pub origin: Option<RepoOrigin>,
    /// Installed only because another package needed it.
    pub automatic: bool,
    /// Held (`exos hold`): the range it may move within, empty for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Installed lazily: its blocks are fetched when read.
    pub lazy: bool,
    /// Its manifest.
    #[serde(skip)]
    pub manifest: Manifest,
}

impl InstalledPackage {
    /// The state entry it is.
    pub fn entry(&self) -> StateEntry {
        StateEntry {
            layer: self.layer,
            file: self.file.clone(),
            sha256: self.sha256,
        }
    }
}

/// The version people know a package by: the origin's own (an imported
/// Debian package's `1:2.3-4`) when it had to be mapped, else its version.
pub fn display_version(m: &Manifest) -> String {
    m.original_version
        .clone()
        .unwrap_or_else(|| m.version.to_string())
}

/// The packages of the current state, in state order, with their origin,
/// marks and holds.
pub fn installed_packages(root: &Root) -> Result<Vec<InstalledPackage>> {
    let current = root.current()?;
    let db = root.package_db()?;
    let (holdings, index) = (root.holdings(), root.index());
    crate::offer::installed_with(root, &holdings, &current)?
        .into_iter()
        .map(|(e, manifest)| describe(root, &holdings, &index, &db, e, manifest))
        .collect()
}

fn describe(
    root: &Root,
    holdings: &Holdings,
    index: &InstalledIndex,
    db: &PackageDb,
    e: StateEntry,
    manifest: std::sync::Arc<Manifest>,
) -> Result<InstalledPackage> {
    let located = holdings.locate(&e);
    let lazy = located.is_none() && holdings.is_lazy(&e);
    let indexed_size = index.get(&e.sha256).map(|i| i.size);
    let size = match (located, indexed_size) {
        (Some(_), Some(size)) => size,
        (Some(p), None) => std::fs::metadata(&p)
            .map_err(|source| Error::Io { path: p, source })?
            .len(),
        (None, _) => {
            exos_lazy::LazyPackage::read(&root.layout, &e.sha256)?.map_or(0, |l| l.record.size)
        }
    };
    Ok(InstalledPackage {
        layer: e.layer,
        name: manifest.name.clone(),
        version: display_version(&manifest),
        summary: manifest.summary.clone(),
        origin: db.origin(&e.sha256).cloned(),
        automatic: db.automatic.contains(&manifest.name),
        held: db.holds.get(&manifest.name).cloned(),
        file: e.file,
        sha256: e.sha256,
        size,
        lazy,
        manifest: std::sync::Arc::unwrap_or_clone(manifest),
    })
}

/// The installed packages called `name` (one per layer at most, usually
/// one), by their name or, for an imported Debian package, its Debian
/// name.
pub fn find_installed(root: &Root, name: &str) -> Result<Vec<InstalledPackage>> {
    Ok(installed_packages(root)?
        .into_iter()
        .filter(|p| p.name == name || p.manifest.original_name.as_deref() == Some(name))
        .collect())
}

/// How to open installed packages' files to read their contents.
#[derive(Clone, Default)]
pub struct Reader {
    /// Keys of sealed packages.
    pub keys: exos_hpkg::crypt::KeyRing,
    /// The block cache lazily installed packages are read through, and
    /// the network timeouts; without one they cannot be opened.
    pub lazy: Option<(Arc<exos_lazy::BlockCache>, exos_repo::Timeouts)>,
}

impl Reader {
    /// Opens the installed package `p`.
    pub fn open(&self, root: &Root, p: &InstalledPackage) -> Result<Package> {
        let options = exos_hpkg::OpenOptions {
            keys: self.keys.clone(),
            ..Default::default()
        };
        if let Some(path) = root.locate(&p.entry()) {
            return Ok(Package::open_with(&path, &options)?);
        }
        let record = exos_lazy::LazyPackage::read(&root.layout, &p.sha256)?.ok_or_else(|| {
            Error::MissingFromState {
                layer: p.layer,
                file: p.file.clone(),
            }
        })?;
        let Some((cache, timeouts)) = &self.lazy else {
            return Err(Error::NoBlockCache);
        };
        let source = exos_lazy::RemoteSource::new(record, cache.clone(), *timeouts)?;
        let what = format!("{} ({})", p.file, source.url());
        source
            .prefetch_metadata()
            .map_err(|e| Error::invalid(&what, format!("reading its metadata: {e}")))?;
        Ok(Package::from_source(source, &what, &options)?)
    }
}

/// One entry of a package, as `exos files` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackagePath {
    /// Where it appears in the layer (`/bin/hello`); `ls -b` style when
    /// `escaped`.
    pub path: String,
    /// Set when the path or target is not UTF-8: both are then written
    /// escaped (`\ooo` per byte that is not UTF-8, `\\` for a backslash;
    /// see [`exos_hpkg::toc::escape_bytes`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub escaped: bool,
    /// `file`, `directory` or `symlink`.
    pub kind: &'static str,
    /// Bytes of a file.
    pub size: u64,
    /// Where a symlink points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
    }
}

/// Every entry of an opened package, sorted, as paths in the layer (`/bin/hello`; files a manifest makes private are under
/// `/.packages/NAME/`, where mounts show them).
pub fn package_paths(pkg: &Package, manifest: &Manifest) -> Vec<PackagePath> {
    let private = |p: &str| {
        exos_manifest::METADATA_FILES.contains(&p)
            || manifest.private.iter().any(|x| {
                let x = x.trim_end_matches('/');
                p == x || p.starts_with(&format!("{x}/"))
            })
    };
    let mut paths: Vec<PackagePath> = pkg
        .toc()
        .walk()
        .map(|(_, e)| {
            let (rel, target) = (e.path_bytes(), e.symlink_target_bytes());
            let escaped = std::str::from_utf8(&rel).is_err()
                || target.is_some_and(|t| std::str::from_utf8(t).is_err());
            let text = |b: &[u8]| match escaped {
                true => exos_hpkg::toc::escape_bytes(b).into_owned(),
                false => String::from_utf8_lossy(b).into_owned(),
            };
            let rel = text(&rel);
            let path = if private(&rel) {
                format!("/.packages/{}/{rel}", manifest.name)
            } else {
                format!("/{rel}")
            };
            PackagePath {
                path,
                escaped,
                kind: kind_name(e.kind()),
                size: e.data().size(),
                target: target.map(text),
            }
        })
        .collect();
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    paths
}

/// A package that holds a path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Owner {
    /// The package.
    pub package: String,
    /// Its version.
    pub version: String,
    /// Its layer.
    pub layer: Layer,
    /// The path in the layer.
    pub path: String,
    /// `file`, `directory` or `symlink`.
    pub kind: &'static str,
}

/// What [`owners`] found: the packages holding the path, and those that
/// could not be searched (name, why).
pub type Owners = (Vec<Owner>, Vec<(String, String)>);

/// The installed packages holding `path` (a path in a layer, `/bin/hello`
/// or `bin/hello`), in state order: the layers' union shows the first
/// file in the highest layer. Packages that cannot be opened are skipped
/// and named in the second list.
pub fn owners(root: &Root, reader: &Reader, path: &str) -> Result<Owners> {
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for p in installed_packages(root)? {
        let pkg = match reader.open(root, &p) {
            Ok(pkg) => pkg,
            Err(e) => {
                unreadable.push((p.name.clone(), e.to_string()));
                continue;
            }
        };
        let mut hits: Vec<(String, EntryKind)> = Vec::new();
        if let Some(e) = pkg.toc().lookup_path(rel) {
            hits.push((format!("/{rel}"), e.kind()));
        }
        // A private path is shown under .packages/NAME/.
        let private_prefix = format!(".packages/{}/", p.name);
        if let Some(inner) = rel.strip_prefix(&private_prefix) {
            if let Some(e) = pkg.toc().lookup_path(inner) {
                hits.push((format!("/{rel}"), e.kind()));
            }
        }
        for (path, kind) in hits {
            found.push(Owner {
                package: p.name.clone(),
                version: p.version.clone(),
                layer: p.layer,
                path,
                kind: kind_name(kind),
            });
        }
    }
    Ok((found, unreadable))
}

/// An installed package that needs another, and by which requirement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dependent {
    /// The package that needs it.
    pub package: String,
    /// Its version.
    pub version: String,
    /// Its layer.
    pub layer: Layer,
    /// The requirement met (`lib:libfoo >=1.0`, or alternatives `a | b`).
    pub requirement: String,
    /// `requires` or `uses` (a system API the package needs present).
    pub relation: &'static str,
}

fn provides(m: &Manifest, dep: &Dependency) -> bool {
    m.provides
        .iter()
        .any(|p| p.api == dep.api && dep.range.matches(p.version.as_ref(), p.compatible.as_ref()))
}

/// The installed packages whose requirements (or `uses`) `target`'s
/// provides meet — what `exos remove TARGET` would take along or leave
/// broken.
pub fn dependents(installed: &[InstalledPackage], target: &Manifest) -> Vec<Dependent> {
    let mut out = Vec::new();
    for p in installed {
        if p.manifest.name == target.name {
            continue;
        }
        for r in &p.manifest.requires {
            if r.alternatives.iter().any(|d| provides(target, d)) {
                out.push(Dependent {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    layer: p.layer,
                    requirement: r.to_string(),
                    relation: "requires",
                });
            }
        }
        for d in &p.manifest.uses {
            if provides(target, d) {
                out.push(Dependent {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    layer: p.layer,
                    requirement: d.to_string(),
                    relation: "uses",
                });
            }
        }
    }
    out
}

/// The automatic packages nothing manual needs any more: those no
/// package kept (manual, held or essential, or automatic and needed)
/// requires or uses, followed through requirements. Sorted by name.
pub fn autoremovable(installed: &[InstalledPackage]) -> Vec<String> {
    let manifests: Vec<&Manifest> = installed.iter().map(|p| &p.manifest).collect();
    let keep: Vec<bool> = installed
        .iter()
        .map(|p| !p.automatic || p.held.is_some())
        .collect();
    unneeded(&manifests, &keep)
}

/// The names of `manifests` that no kept one (`keep[i]`, or essential)
/// needs, directly or through others. Sorted, without repeats.
pub(crate) fn unneeded(manifests: &[&Manifest], keep: &[bool]) -> Vec<String> {
    let mut needed: BTreeSet<usize> = (0..manifests.len())
        .filter(|&i| keep[i] || manifests[i].essential)
        .collect();
    let mut todo: Vec<usize> = needed.iter().copied().collect();
    while let Some(i) = todo.pop() {
        let m = manifests[i];
        let deps = m
            .requires
            .iter()
            .flat_map(|r| r.alternatives.iter())
            .chain(m.uses.iter());
        for d in deps {
            for (j, q) in manifests.iter().enumerate() {
                if !needed.contains(&j) && provides(q, d) {
                    needed.insert(j);
                    todo.push(j);
                }
            }
        }
    }
    let names: BTreeSet<String> = (0..manifests.len())
        .filter(|i| !needed.contains(i))
        .map(|i| manifests[i].name.clone())
        .collect();
    names.into_iter().collect()
}

/// One state of the history, with what it changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// The state's number.
    pub state: u64,
    /// Whether it is the current one.
    pub current: bool,
    /// When it was made (seconds since the epoch).
    pub created: u64,
    /// What made it (`install hello 1.0`, `rollback to 3`, …).
    pub change: String,
    /// Package files it has that the state before did not.
    pub added: Vec<String>,
    /// Package files the state before had that it does not.
    pub removed: Vec<String>,
}

/// Every state, oldest first, with the files each added and removed.
pub fn history(root: &Root) -> Result<Vec<HistoryEntry>> {
    let current = root.current_number()?;
    let mut out = Vec::new();
    let mut before: Option<exos_root::StateList> = None;
    for n in root.states()? {
        let s = root.state(n)?;
        let (added, removed) = match &before {
            Some(b) => crate::diff(b, &s)
                .into_iter()
                .partition::<Vec<_>, _>(|c| c.action == crate::FileAction::Add),
            None => (
                crate::diff(&exos_root::StateList::default(), &s),
                Vec::new(),
            ),
        };
        let show = |v: Vec<crate::FileChange>| {
            v.into_iter()
                .map(|c| format!("{}/{}", c.entry.layer, c.entry.file))
                .collect()
        };
        out.push(HistoryEntry {
            state: n,
            current: Some(n) == current,
            created: s.created,
            change: s.change.clone(),
            added: show(added),
            removed: show(removed),
        });
        before = Some(s);
    }
    Ok(out)
}

/// Holds, by package name (`exos hold` / `unhold`); the root must be
/// locked. A hold may name a package not installed: it applies once it is.
pub fn set_hold(root: &Root, name: &str, range: Option<&str>) -> Result<()> {
    if let Some(r) = range {
        exos_manifest::VersionRange::parse(r)
            .map_err(|e| Error::invalid(format!("hold {name} {r}"), e))?;
    }
    root.change_db(|db| {
        db.holds
            .insert(name.to_string(), range.unwrap_or_default().to_string());
    })
}

/// Lifts a hold; false when there was none.
pub fn clear_hold(root: &Root, name: &str) -> Result<bool> {
    let mut had = false;
    root.change_db(|db| had = db.holds.remove(name).is_some())?;
    Ok(had)
}

/// Names of every package a root's current state has, by layer.
pub fn names_by_layer(installed: &[InstalledPackage]) -> BTreeMap<Layer, Vec<String>> {
    let mut out: BTreeMap<Layer, Vec<String>> = BTreeMap::new();
    for p in installed {
        out.entry(p.layer).or_default().push(p.name.clone());
    }
    out
}

/// Where the file of an installed package is (`None` for a lazy one).
pub fn package_path(root: &Root, p: &InstalledPackage) -> Option<PathBuf> {
    root.locate(&p.entry())
}
