//! The everyday questions: `exos list --installed`, `exos info NAME`,
//! `exos files`, `exos owner`, `exos why`, `exos history`, `exos hold`.
//! The answers come from `exos_manager::query`; this module renders them.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use exos_manager::query::{self, Dependent, HistoryEntry, InstalledPackage, Owner, PackagePath};
use exos_manager::Root;

use crate::output::{bytes, Out};

/// `exos list --installed`.
#[derive(Serialize)]
pub struct InstalledReport {
    /// The installed packages, by layer then name.
    pub packages: Vec<InstalledPackage>,
}

fn origin_of(p: &InstalledPackage) -> String {
    match &p.origin {
        Some(o) => o.repository.clone(),
        None => "local".into(),
    }
}

fn marks(p: &InstalledPackage) -> String {
    let mut m = vec![if p.automatic { "automatic" } else { "manual" }];
    if p.held.is_some() {
        m.push("held");
    }
    if p.lazy {
        m.push("lazy");
    }
    m.join(", ")
}

/// `exos list --installed`: every installed package, by layer.
pub fn list_installed(root: &Path, user: Option<&exos_root::UserName>, out: Out) -> Result<()> {
    let r = crate::users::read(root, user)?;
    let mut packages = query::installed_packages(&r)?;
    packages.sort_by(|a, b| a.layer.cmp(&b.layer).then(a.name.cmp(&b.name)));
    out.result(&InstalledReport { packages }, |r| {
        if r.packages.is_empty() {
            return "No packages installed.\n".into();
        }
        let mut s = String::new();
        let mut layer = None;
        for p in &r.packages {
            if layer != Some(p.layer) {
                s += &format!("{}:\n", p.layer);
                layer = Some(p.layer);
            }
            s += &format!(
                "  {} {}  [{}, {}, {}]\n",
                shown_name(p),
                p.version,
                origin_of(p),
                bytes(p.size),
                marks(p)
            );
        }
        s
    })
}

/// The name people know a package by (an imported Debian package's own).
fn shown_name(p: &InstalledPackage) -> &str {
    p.manifest.original_name.as_deref().unwrap_or(&p.name)
}

/// `exos info NAME` of an installed package.
#[derive(Serialize)]
pub struct InstalledInfo<'a> {
    /// Always `installed`.
    pub kind: &'static str,
    /// What the root knows about it.
    #[serde(flatten)]
    pub package: &'a InstalledPackage,
    /// Its manifest.
    pub manifest: &'a exos_manifest::Manifest,
    /// Installed packages that need it.
    pub required_by: Vec<Dependent>,
}

/// `exos info NAME` of a package a repository offers.
#[derive(Serialize)]
pub struct AvailableInfo<'a> {
    /// Always `available`.
    pub kind: &'static str,
    /// The package's name.
    pub name: &'a str,
    /// Its version as people know it.
    pub version: String,
    /// The repository offering it.
    pub repository: &'a str,
    /// Its file there.
    pub file: &'a str,
    /// The file's size.
    pub size: u64,
    /// Its manifest.
    pub manifest: &'a exos_manifest::Manifest,
}

fn manifest_lines(m: &exos_manifest::Manifest) -> String {
    let mut s = String::new();
    if !m.description.is_empty() && m.description != m.summary {
        s += &format!(
            "description:  {}\n",
            m.description.replace('\n', "\n              ")
        );
    }
    if let Some(h) = &m.homepage {
        s += &format!("homepage:     {h}\n");
    }
    if !m.provides.is_empty() {
        let p: Vec<String> = m
            .provides
            .iter()
            .map(|p| match &p.version {
                Some(v) => format!("{} = {v}", p.api),
                None => p.api.clone(),
            })
            .collect();
        s += &format!("provides:     {}\n", p.join(", "));
    }
    if !m.requires.is_empty() {
        let r: Vec<String> = m.requires.iter().map(|r| r.to_string()).collect();
        s += &format!("requires:     {}\n", r.join(", "));
    }
    if !m.uses.is_empty() {
        let u: Vec<String> = m.uses.iter().map(|u| u.to_string()).collect();
        s += &format!("uses:         {}\n", u.join(", "));
    }
    if m.essential {
        s += "essential:    yes\n";
    }
    s
}

/// `exos info NAME`: an installed package, else what the repositories
/// offer under that name.
pub fn info_name(name: &str, root: &Path, out: Out) -> Result<()> {
    let r = Root::read_only(root)?;
    let all = query::installed_packages(&r)?;
    let found: Vec<&InstalledPackage> = all
        .iter()
        .filter(|p| p.name == name || p.manifest.original_name.as_deref() == Some(name))
        .collect();
    if let Some(p) = found.first() {
        let report = InstalledInfo {
            kind: "installed",
            package: p,
            manifest: &p.manifest,
            required_by: query::dependents(&all, &p.manifest),
        };
        return out.result(&report, |i| {
            let p = i.package;
            let mut s = format!(
                "{} {}: {}\nlayer:        {}\nfile:         {} ({}, SHA-256 {})\norigin:       {}\ninstalled:    {}\n",
                shown_name(p),
                p.version,
                p.summary,
                p.layer,
                p.file,
                bytes(p.size),
                p.sha256,
                origin_of(p),
                marks(p),
            );
            if let Some(range) = &p.held {
                s += &format!(
                    "held:         {}\n",
                    if range.is_empty() { "at this version" } else { range }
                );
            }
            s += &manifest_lines(i.manifest);
            if !i.required_by.is_empty() {
                let by: Vec<String> = i
                    .required_by
                    .iter()
                    .map(|d| format!("{} ({})", d.package, d.requirement))
                    .collect();
                s += &format!("required by:  {}\n", by.join(", "));
            }
            s
        });
    }
    let offered = exos_repo::Client::new(root).offered().unwrap_or_default();
    let mut matches: Vec<&exos_repo::OfferedPackage> = offered
        .iter()
        .filter(|o| o.manifest.name == name || o.manifest.original_name.as_deref() == Some(name))
        .collect();
    matches.sort_by(|a, b| b.manifest.version.compare(&a.manifest.version));
    let Some(o) = matches.first() else {
        let mut known: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
        known.extend(offered.iter().map(|o| o.manifest.name.clone()));
        bail!("{}", crate::suggest::unknown_package(name, &known));
    };
    let report = AvailableInfo {
        kind: "available",
        name: &o.manifest.name,
        version: query::display_version(&o.manifest),
        repository: &o.origin.repository,
        file: o.file(),
        size: o.size(),
        manifest: &o.manifest,
    };
    out.result(&report, |i| {
        format!(
            "{} {}: {}\nnot installed; offered by {} ({}, {})\n{}",
            i.manifest.original_name.as_deref().unwrap_or(i.name),
            i.version,
            i.manifest.summary,
            i.repository,
            i.file,
            bytes(i.size),
            manifest_lines(i.manifest)
        )
    })
}

/// A reader of installed packages with these keys and settings.
fn reader(keys: exos_hpkg::crypt::KeyRing, settings: &crate::settings::Settings) -> query::Reader {
    let lazy = settings.block_cache.as_ref().and_then(|dir| {
        exos_lazy::BlockCache::open(dir, exos_lazy::cache::DEFAULT_CAPACITY)
            .ok()
            .map(|c| (std::sync::Arc::new(c), settings.timeouts))
    });
    query::Reader { keys, lazy }
}

/// `exos files NAME`.
#[derive(Serialize)]
pub struct FilesReport<'a> {
    /// The package.
    pub package: &'a str,
    /// Its layer.
    pub layer: exos_root::Layer,
    /// Its entries, as paths in the layer.
    pub paths: Vec<PackagePath>,
}

/// `exos files NAME`: what an installed package holds (like `dpkg -L`).
pub fn files(
    name: &str,
    root: &Path,
    user: Option<&exos_root::UserName>,
    keys: exos_hpkg::crypt::KeyRing,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let r = crate::users::read(root, user)?;
    let p = one_installed(&r, name)?;
    let pkg = reader(keys, settings).open(&r, &p)?;
    let report = FilesReport {
        package: &p.name,
        layer: p.layer,
        paths: query::package_paths(&pkg, &p.manifest),
    };
    out.result(&report, |f| {
        f.paths
            .iter()
            .map(|p| match &p.target {
                Some(t) => format!("{} -> {t}\n", p.path),
                None => format!("{}\n", p.path),
            })
            .collect()
    })
}

fn one_installed(r: &Root, name: &str) -> Result<InstalledPackage> {
    let all = query::installed_packages(r)?;
    let mut found: Vec<InstalledPackage> = all
        .iter()
        .filter(|p| p.name == name || p.manifest.original_name.as_deref() == Some(name))
        .cloned()
        .collect();
    if found.is_empty() {
        let known: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
        bail!(
            "{} (installed packages only)",
            crate::suggest::unknown_package(name, &known)
        );
    }
    // The highest layer's: what the union shows.
    found.sort_by_key(|p| std::cmp::Reverse(p.layer));
    Ok(found.remove(0))
}

/// `exos owner PATH`.
#[derive(Serialize)]
pub struct OwnerReport {
    /// The path asked about.
    pub path: String,
    /// The packages holding it; the first one is what the layers' union
    /// shows.
    pub owners: Vec<Owner>,
    /// Packages that could not be read (and why): they may hold it too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<(String, String)>,
}

/// The package a mounted file comes from, as its `user.exos.package`
/// extended attribute says (`NAME VERSION LAYER`).
fn mounted_owner(path: &Path) -> Option<String> {
    xattr_get(path, "user.exos.package")
}

fn xattr_get(path: &Path, name: &str) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// `exos owner PATH`: which installed packages hold PATH (like `dpkg -S`):
/// a path in a layer (`/bin/hello`), or a file under a mount, which says
/// itself through its `user.exos.package` attribute.
pub fn owner(
    path: &str,
    root: Option<&Path>,
    keys: exos_hpkg::crypt::KeyRing,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    if let Some(said) = mounted_owner(Path::new(path)) {
        let mut words = said.splitn(4, ' ');
        let (Some(package), Some(version), Some(layer), Some(inner)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("{path}: its user.exos.package attribute is {said:?}");
        };
        let report = OwnerReport {
            path: path.to_string(),
            owners: vec![Owner {
                package: package.to_string(),
                version: version.to_string(),
                layer: layer.parse()?,
                path: inner.to_string(),
                kind: if Path::new(path).is_dir() {
                    "directory"
                } else {
                    "file"
                },
            }],
            unreadable: Vec::new(),
        };
        return render_owners(report, out);
    }
    // A file under a mount that serves no extended attributes: the path
    // in the layers, looked up in the mounted root's packages.
    let (root, layer, inner) = match under_mount(Path::new(path)) {
        Some((root, layer, inner)) => (root, layer, inner),
        None => match root {
            Some(root) => (root.to_path_buf(), None, path.to_string()),
            None => bail!("{path}: not a file of an exos mount; to look it up in a root's packages, give -r ROOT or set $EXOS_ROOT"),
        },
    };
    let r = Root::read_only(&root)?;
    let (mut owners, unreadable) = query::owners(&r, &reader(keys, settings), &inner)?;
    if let Some(l) = layer {
        owners.retain(|o| o.layer == l);
    }
    // The union shows the highest layer's file first.
    owners.sort_by_key(|o| std::cmp::Reverse(o.layer));
    if owners.is_empty() && unreadable.is_empty() {
        bail!("{path}: no installed package holds it");
    }
    render_owners(
        OwnerReport {
            path: path.to_string(),
            owners,
            unreadable,
        },
        out,
    )
}

/// For a path under an exos mount: the mounted root, the layer the path
/// is in when it names one (`MNT/system/…`), and the path in the layers.
fn under_mount(path: &Path) -> Option<(std::path::PathBuf, Option<exos_root::Layer>, String)> {
    let abs = std::path::absolute(path).ok()?;
    let mut mnt = abs.as_path();
    let status = loop {
        let candidate = mnt.join(".exos/status.json");
        if let Ok(text) = std::fs::read(&candidate) {
            break serde_json::from_slice::<exos_packagefs::mount::Status>(&text).ok()?;
        }
        mnt = mnt.parent()?;
    };
    let rel: Vec<String> = abs
        .strip_prefix(mnt)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let (layer, skip) = match rel.first().map(String::as_str) {
        Some("merged") | Some("merged-system") => (None, 1),
        Some("users") => (Some(exos_root::Layer::User), 2),
        Some("merged-users") => (None, 2),
        Some(l) => (Some(l.parse().ok()?), 1),
        None => return None,
    };
    let inner = format!("/{}", rel.get(skip..)?.join("/"));
    Some((status.root, layer, inner))
}

fn render_owners(report: OwnerReport, out: Out) -> Result<()> {
    out.result(&report, |r| {
        let mut s: String = r
            .owners
            .iter()
            .map(|o| format!("{} {} ({}): {}\n", o.package, o.version, o.layer, o.path))
            .collect();
        for (name, why) in &r.unreadable {
            s += &format!("({name} not searched: {why})\n");
        }
        s
    })
}

/// `exos why NAME`.
#[derive(Serialize)]
pub struct WhyReport<'a> {
    /// The package asked about.
    pub package: &'a str,
    /// Whether it was installed by name (`manual`) or pulled in
    /// (`automatic`).
    pub installed: &'static str,
    /// Installed packages that need it, and by which requirement.
    pub required_by: Vec<Dependent>,
}

/// `exos why NAME`: what needs an installed package.
pub fn why(name: &str, root: &Path, user: Option<&exos_root::UserName>, out: Out) -> Result<()> {
    let r = crate::users::read(root, user)?;
    let all = query::installed_packages(&r)?;
    let p = one_installed(&r, name)?;
    let report = WhyReport {
        package: &p.name,
        installed: if p.automatic { "automatic" } else { "manual" },
        required_by: query::dependents(&all, &p.manifest),
    };
    out.result(&report, |w| {
        let mut s = format!(
            "{} was installed {}.\n",
            w.package,
            if w.installed == "manual" {
                "by name (manual)"
            } else {
                "as a dependency (automatic)"
            }
        );
        if w.required_by.is_empty() {
            s += "No installed package needs it.\n";
        }
        for d in &w.required_by {
            s += &format!(
                "{} {} ({}) {} {}\n",
                d.package, d.version, d.layer, d.relation, d.requirement
            );
        }
        s
    })
}

/// `exos history`: every state and what it changed (like `dnf history`).
pub fn history(root: &Path, user: Option<&exos_root::UserName>, out: Out) -> Result<()> {
    let r = crate::users::read(root, user)?;
    let entries: Vec<HistoryEntry> = query::history(&r)?;
    out.result(&entries, |rows| {
        let mut s = String::new();
        for h in rows {
            s += &format!(
                "{} {:>4}  {}  {}\n",
                if h.current { "*" } else { " " },
                h.state,
                crate::listing::format_utc(h.created),
                h.change
            );
            for a in &h.added {
                s += &format!("          + {a}\n");
            }
            for a in &h.removed {
                s += &format!("          - {a}\n");
            }
        }
        s
    })
}

/// What `exos hold` / `unhold` did.
#[derive(Serialize)]
pub struct HoldReport {
    /// Every hold now, by name: the range it may move within, empty for
    /// none.
    pub holds: std::collections::BTreeMap<String, String>,
}

/// `exos hold NAME[RANGE]...` / `exos unhold NAME...`; no names: list.
pub fn hold(
    specs: &[String],
    release: bool,
    root: &Path,
    user: Option<&exos_root::UserName>,
    out: Out,
) -> Result<()> {
    if specs.is_empty() {
        let r = crate::users::read(root, user)?;
        let holds = r.package_db()?.holds;
        return out.result(&HoldReport { holds }, render_holds);
    }
    let r = crate::users::lock(root, user)?;
    let installed = query::installed_packages(&r)?;
    for spec in specs {
        if release {
            let name = canonical_name(spec, &installed);
            if !query::clear_hold(&r, &name)? {
                bail!("{spec}: not held");
            }
            continue;
        }
        let dep =
            exos_manifest::Dependency::parse(spec).map_err(|e| anyhow::anyhow!("hold: {e}"))?;
        let name = canonical_name(&dep.api, &installed);
        if !installed.iter().any(|p| p.name == name) {
            let known: Vec<String> = installed.iter().map(|p| p.name.clone()).collect();
            bail!(
                "{} (only installed packages can be held)",
                crate::suggest::unknown_package(&dep.api, &known)
            );
        }
        let range = (!dep.range.is_any()).then(|| dep.range.to_string());
        query::set_hold(&r, &name, range.as_deref())?;
    }
    let holds = r.package_db()?.holds;
    out.report(&HoldReport { holds }, render_holds)
}

fn render_holds(h: &HoldReport) -> String {
    if h.holds.is_empty() {
        return "No packages are held.\n".into();
    }
    h.holds
        .iter()
        .map(|(n, r)| {
            if r.is_empty() {
                format!("{n} held\n")
            } else {
                format!("{n} held within {r}\n")
            }
        })
        .collect()
}

/// The name packages use for `name`, which may be an imported package's
/// Debian name.
pub fn canonical_name(name: &str, installed: &[InstalledPackage]) -> String {
    installed
        .iter()
        .find(|p| p.manifest.original_name.as_deref() == Some(name))
        .map_or_else(|| name.to_string(), |p| p.name.clone())
}

/// Why `exos info` did not take `arg` as a file.
pub fn looks_like_file(arg: &Path) -> bool {
    arg.exists()
        || arg.components().count() > 1
        || arg.extension().is_some_and(|e| e == "hpkg" || e == "hpkr")
}
