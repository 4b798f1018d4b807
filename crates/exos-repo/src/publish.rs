//! Publishing a directory of packages as a repository.

use std::path::{Path, PathBuf};

use exos_manifest::Manifest;
use exos_root::write_public;
use exos_trust::{FileDigest, SecretKey};
use serde::Serialize;

use crate::metadata::{
    self, DocRef, IndexDoc, IndexEntry, RoleKeys, RootDoc, TimestampDoc, INDEX_TYPE, ROOT_TYPE,
    TIMESTAMP_TYPE,
};
use crate::{now, RepoError};

const DAY: u64 = 86_400;

/// How long documents stay valid.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// How long `root.json` is valid.
    pub root_days: u64,
    /// How long `index.json` is valid.
    pub index_days: u64,
    /// How long `timestamp.json` is valid.
    pub timestamp_days: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            root_days: 365,
            index_days: 30,
            timestamp_days: 1,
        }
    }
}

/// How the repository describes itself to Haiku's tools (the HPKR's
/// repository info). Empty fields get defaults from the directory name.
#[derive(Debug, Clone, Default)]
pub struct HaikuInfo {
    /// The repository's name.
    pub name: String,
    /// Who publishes it.
    pub vendor: String,
    /// One line about it.
    pub summary: String,
    /// `baseUrl`: where Haiku's package kit fetches packages from.
    pub base_url: String,
    /// Haiku's identifier (a URL naming the repository).
    pub identifier: String,
    /// Haiku's priority.
    pub priority: u8,
    /// The architecture; when `None`, a kept `repo.info`'s, else the host's.
    pub architecture: Option<exos_hpkg::Architecture>,
}

/// The driver-settings text of `repo.info`, which Haiku serves beside `repo`.
fn repo_info_text(i: &exos_hpkg::RepositoryInfo, other: &[String]) -> String {
    let q = |v: &str| {
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '#') {
            format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            v.to_string()
        }
    };
    let mut s = format!(
        "name {}\nvendor {}\nsummary {}\npriority {}\n",
        q(&i.name),
        q(&i.vendor),
        q(&i.summary),
        i.priority
    );
    if !i.base_url.is_empty() {
        s += &format!("baseurl {}\n", q(&i.base_url));
    }
    s += &format!(
        "identifier {}\narchitecture {}\n",
        q(&i.identifier),
        i.architecture.name()
    );
    for line in other {
        s += line;
        s.push('\n');
    }
    s
}

/// A delta `exos repo index` published.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedDelta {
    /// The delta's file name.
    pub file: String,
    /// The old package's file name.
    pub from: String,
    /// The new package's file name.
    pub to: String,
    /// The delta's size.
    pub size: u64,
    /// The new package's size.
    pub package_size: u64,
    /// Already made by an earlier run (same old and new packages).
    pub reused: bool,
}

/// What `exos repo index` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The repository directory.
    pub dir: PathBuf,
    /// Packages indexed.
    pub packages: usize,
    /// Packages this run signed (their `.minisig` was missing).
    pub signed_now: usize,
    /// The new index's version.
    pub index_version: u64,
    /// The new timestamp's version.
    pub timestamp_version: u64,
    /// When the timestamp expires (seconds since the epoch).
    pub expires: u64,
    /// Deltas made or kept.
    pub deltas: Vec<PublishedDelta>,
}

fn read_doc(dir: &Path, file: &str) -> Result<Option<Vec<u8>>, RepoError> {
    match std::fs::read(dir.join(file)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RepoError::io(dir.join(file), e)),
    }
}

fn write_doc<T: Serialize>(
    dir: &Path,
    file: &str,
    doc: &T,
    key: &SecretKey,
) -> Result<(), RepoError> {
    let (bytes, sig) = metadata::sign_doc(doc, key, file)?;
    // The signature first: a reader that sees the new document sees its
    // signature (a reader between the two renames sees a mismatch and
    // retries, never a forged pair).
    let sig_path = dir.join(format!("{file}.minisig"));
    write_public(&sig_path, sig.as_bytes()).map_err(|e| RepoError::io(&sig_path, e))?;
    let path = dir.join(file);
    write_public(&path, &bytes).map_err(|e| RepoError::io(&path, e))
}

/// The repository's root: the existing one (which must list `key` for the
/// index and timestamp roles), or a new one with `key` in every role.
fn root_for(dir: &Path, key: &SecretKey, life: Lifetimes) -> Result<RootDoc, RepoError> {
    let public = key.public().to_base64();
    if let Some(bytes) = read_doc(dir, "root.json")? {
        let root = metadata::parse_root(&bytes, "root.json")?;
        for role in [metadata::Role::Index, metadata::Role::Timestamp] {
            if !root.keys.of(role).contains(&public) {
                return Err(RepoError::invalid(
                    dir.join("root.json").display(),
                    format!("key {} is not listed for the {role:?} role", key.id),
                ));
            }
        }
        return Ok(root);
    }
    let root = RootDoc {
        kind: ROOT_TYPE.into(),
        version: 1,
        expires: now() + life.root_days * DAY,
        keys: RoleKeys {
            root: vec![public.clone()],
            index: vec![public.clone()],
            timestamp: vec![public],
        },
    };
    write_doc(dir, "root.json", &root, key)?;
    Ok(root)
}

/// Indexes every `*.hpkg` in `dir`: signs packages without a signature,
/// writes `index.json` (next version) and `timestamp.json` (next version),
/// and `root.json` when there is none.
pub fn index(
    dir: &Path,
    key: &SecretKey,
    life: Lifetimes,
    haiku: &HaikuInfo,
    deltas: usize,
) -> Result<Published, RepoError> {
    index_with_progress(dir, key, life, haiku, deltas, &|_, _, _| {})
}

/// Progress of making one delta: its file, parts done, parts in all.
pub type DeltaProgress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// [`index`], reporting the making of each delta (which can take a while
/// for big packages) through `progress`.
pub fn index_with_progress(
    dir: &Path,
    key: &SecretKey,
    life: Lifetimes,
    haiku: &HaikuInfo,
    deltas: usize,
    progress: DeltaProgress<'_>,
) -> Result<Published, RepoError> {
    root_for(dir, key, life)?;
    let mut hpkr_packages = Vec::new();
    let mut haiku_names: Vec<(PathBuf, String)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| RepoError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hpkg") && p.is_file())
        .collect();
    files.sort();
    let mut packages = Vec::new();
    // (name, version) of each entry of `packages`, for deltas.
    let mut versions = Vec::new();
    let mut signed_now = 0;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unreadable = |source| RepoError::Package {
            path: f.clone(),
            source,
        };
        let pkg = exos_hpkg::Package::open(f).map_err(unreadable)?;
        // Every chunk decompresses: clients trust these bytes by hash and
        // do not decompress them all again.
        pkg.verify_data().map_err(unreadable)?;
        let manifest = Manifest::from_package(&pkg)
            .map_err(|e| RepoError::invalid(f.display(), e.to_string()))?;
        let info = pkg.info().clone();
        let digest = FileDigest::of_file(f).map_err(|e| RepoError::io(f, e))?;
        let sig_path = exos_trust::beside(f);
        if !sig_path.exists() {
            let sig = key.sign(
                &digest.blake2b,
                &format!("signature from exos secret key {}", key.id),
                &format!(
                    "timestamp:{}\tfile:{name}\thashed\tpackage:{}-{}",
                    now(),
                    manifest.name,
                    manifest.version
                ),
            )?;
            write_public(&sig_path, sig.render().as_bytes())
                .map_err(|e| RepoError::io(&sig_path, e))?;
            signed_now += 1;
        }
        // The block map lazy mounts verify each fetched block against.
        let blocks = crate::blocks::BlockMap::of_file(f, crate::blocks::DEFAULT_BLOCK_SIZE)
            .map_err(|e| RepoError::io(f, e))?;
        let blocks_path = dir.join(format!("{name}.blocks"));
        write_public(&blocks_path, &blocks.render()).map_err(|e| RepoError::io(&blocks_path, e))?;
        haiku_names.push((f.clone(), info.canonical_file_name()));
        versions.push((manifest.name.clone(), manifest.version.clone()));
        hpkr_packages.push((info, digest.sha256.to_string()));
        packages.push(IndexEntry {
            file: name,
            size: digest.size,
            sha256: digest.sha256,
            signed: true,
            manifest: manifest.to_json(),
            blocks: Some(blocks.reference()),
            metadata_offset: Some(pkg.metadata_file_offset()),
            deltas: Vec::new(),
        });
    }
    let deltas_published = publish_deltas(dir, &mut packages, &versions, deltas, progress)?;
    // Haiku's own index of the same packages: `repo` (HPKR, what
    // `package_repo` and pkgman read), `repo.info`, `repo.sha256`.
    let dir_name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "exos".into());
    // What a publisher wrote in repo.info by hand stays unless an option
    // says otherwise.
    let kept = crate::repo_info::RepoInfoText::read(dir)?.unwrap_or_default();
    let or = |v: &str, k: &str, d: String| {
        if !v.is_empty() {
            v.to_string()
        } else if !k.is_empty() {
            k.to_string()
        } else {
            d
        }
    };
    let name = or(&haiku.name, &kept.name, dir_name);
    let repo_info = exos_hpkg::RepositoryInfo {
        identifier: or(
            &haiku.identifier,
            &kept.identifier,
            format!("tag:exos,2026:{name}"),
        ),
        vendor: or(
            &haiku.vendor,
            &kept.vendor,
            hpkr_packages
                .first()
                .map(|(i, _)| i.vendor.clone())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "EXOS".into()),
        ),
        summary: or(
            &haiku.summary,
            &kept.summary,
            format!("{name} (published by exos)"),
        ),
        base_url: or(&haiku.base_url, &kept.base_url, String::new()),
        priority: match (haiku.priority, kept.priority) {
            (0, Some(p)) => p,
            (0, None) => 1,
            (p, _) => p,
        },
        architecture: haiku
            .architecture
            .or_else(|| exos_hpkg::Architecture::from_name(&kept.architecture))
            .unwrap_or_else(exos_hpkg::Architecture::host),
        name,
        license_names: Vec::new(),
        license_texts: Vec::new(),
    };
    // Haiku's package kit fetches `<baseUrl>/packages/<canonical name>`:
    // hard links to the published files, made afresh each time.
    let links = dir.join("packages");
    if links.is_dir() {
        for e in std::fs::read_dir(&links).map_err(|e| RepoError::io(&links, e))? {
            let e = e.map_err(|e| RepoError::io(&links, e))?;
            if e.file_name().to_string_lossy().ends_with(".hpkg") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    } else {
        std::fs::create_dir_all(&links).map_err(|e| RepoError::io(&links, e))?;
    }
    for (file, canonical) in &haiku_names {
        if canonical.contains('/') || canonical.starts_with('.') {
            continue;
        }
        let to = links.join(canonical);
        if to.exists() {
            // Two files of the same package name and version: the first wins.
            continue;
        }
        std::fs::hard_link(file, &to)
            .or_else(|_| std::fs::copy(file, &to).map(|_| ()))
            .map_err(|e| RepoError::io(&to, e))?;
    }
    let hpkr = dir.join("repo");
    exos_hpkg::repo_writer::write_repository(
        &hpkr,
        &repo_info,
        &hpkr_packages,
        exos_hpkg::BuildOptions::default(),
    )
    .map_err(|e| RepoError::invalid(hpkr.display(), e.to_string()))?;
    let sha = exos_root::Sha256::of_file(&hpkr).map_err(|e| RepoError::io(&hpkr, e))?;
    for (file, text) in [
        ("repo.sha256", format!("{sha}\n")),
        ("repo.info", repo_info_text(&repo_info, &kept.other)),
    ] {
        let p = dir.join(file);
        write_public(&p, text.as_bytes()).map_err(|e| RepoError::io(&p, e))?;
    }
    let previous = |file: &str| -> Result<u64, RepoError> {
        Ok(match read_doc(dir, file)? {
            Some(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["version"].as_u64())
                .unwrap_or(0),
            None => 0,
        })
    };
    let index = IndexDoc {
        kind: INDEX_TYPE.into(),
        version: previous("index.json")? + 1,
        expires: now() + life.index_days * DAY,
        packages,
    };
    write_doc(dir, "index.json", &index, key)?;
    let timestamp = write_timestamp(dir, key, life)?;
    Ok(Published {
        dir: dir.to_path_buf(),
        packages: files.len(),
        signed_now,
        index_version: index.version,
        timestamp_version: timestamp.version,
        expires: timestamp.expires,
        deltas: deltas_published,
    })
}

/// Makes (or keeps, when already made) deltas to the newest version of
/// every package from up to `per_package` older versions in `dir`, adds
/// them to the entries, and removes `*.delta` files no entry names. A delta
/// is published only when smaller than the package it rebuilds.
fn publish_deltas(
    dir: &Path,
    packages: &mut [IndexEntry],
    versions: &[(String, exos_hpkg::Version)],
    per_package: usize,
    progress: DeltaProgress<'_>,
) -> Result<Vec<PublishedDelta>, RepoError> {
    let mut made = Vec::new();
    let mut keep: Vec<String> = Vec::new();
    let mut names: Vec<&String> = versions.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut idx: Vec<usize> = (0..packages.len())
            .filter(|&i| &versions[i].0 == name)
            .collect();
        idx.sort_by(|&a, &b| versions[b].1.compare(&versions[a].1));
        let Some((&newest, older)) = idx.split_first() else {
            continue;
        };
        for &o in older.iter().take(per_package) {
            let (from, to) = (packages[o].sha256, packages[newest].sha256);
            if from == to {
                continue;
            }
            let file = format!(
                "{}.from-{}.delta",
                packages[newest].file,
                &from.to_string()[..16]
            );
            let path = dir.join(&file);
            let current = exos_delta::DeltaReader::open(&path)
                .ok()
                .is_some_and(|r| r.header().from.sha256 == from && r.header().to.sha256 == to);
            if !current {
                exos_delta::make_with_progress(
                    &dir.join(&packages[o].file),
                    &dir.join(&packages[newest].file),
                    &path,
                    &exos_delta::MakeOptions::default(),
                    &|done, total| progress(&file, done, total),
                )
                .map_err(|source| RepoError::Delta {
                    file: path.display().to_string(),
                    source: Box::new(source),
                })?;
            }
            let digest = FileDigest::of_file(&path).map_err(|e| RepoError::io(&path, e))?;
            if digest.size >= packages[newest].size {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            keep.push(file.clone());
            made.push(PublishedDelta {
                file: file.clone(),
                from: packages[o].file.clone(),
                to: packages[newest].file.clone(),
                size: digest.size,
                package_size: packages[newest].size,
                reused: current,
            });
            packages[newest].deltas.push(crate::metadata::DeltaRef {
                from,
                file,
                size: digest.size,
                sha256: digest.sha256,
            });
        }
    }
    for e in std::fs::read_dir(dir).map_err(|e| RepoError::io(dir, e))? {
        let e = e.map_err(|e| RepoError::io(dir, e))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".delta") && !keep.contains(&n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(made)
}

/// Re-signs `timestamp.json` for the current `index.json` with a new
/// version and expiry (run daily, e.g. from cron).
pub fn write_timestamp(
    dir: &Path,
    key: &SecretKey,
    life: Lifetimes,
) -> Result<TimestampDoc, RepoError> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|e| RepoError::io(&index_path, e))?;
    let index = metadata::parse_index(&bytes, &index_path.display().to_string())?;
    let version = match read_doc(dir, "timestamp.json")? {
        Some(b) => metadata::parse_timestamp(&b, "timestamp.json")?.version + 1,
        None => 1,
    };
    let ts = TimestampDoc {
        kind: TIMESTAMP_TYPE.into(),
        version,
        expires: now() + life.timestamp_days * DAY,
        index: DocRef {
            version: index.version,
            size: bytes.len() as u64,
            sha256: exos_root::Sha256::of_bytes(&bytes),
        },
    };
    write_doc(dir, "timestamp.json", &ts, key)?;
    Ok(ts)
}

/// Replaces the repository's root key: a new `root.json` (next version,
/// `new` in every role) signed by the new key, and the same document as
/// `VERSION.root.json`, signed by the old root key (`.minisig`) and by the
/// new one (`.new.minisig`), so clients that trust the old root can follow
/// the chain. Then re-index with the new key.
pub fn rotate_root(
    dir: &Path,
    old: &SecretKey,
    new: &SecretKey,
    life: Lifetimes,
) -> Result<RootDoc, RepoError> {
    let path = dir.join("root.json");
    let bytes = std::fs::read(&path).map_err(|e| RepoError::io(&path, e))?;
    let current = metadata::parse_root(&bytes, &path.display().to_string())?;
    if !current.keys.root.contains(&old.public().to_base64()) {
        return Err(RepoError::invalid(
            path.display(),
            format!("key {} is not its root key", old.id),
        ));
    }
    let public = new.public().to_base64();
    let next = RootDoc {
        kind: ROOT_TYPE.into(),
        version: current.version + 1,
        expires: now() + life.root_days * DAY,
        keys: RoleKeys {
            root: vec![public.clone()],
            index: vec![public.clone()],
            timestamp: vec![public],
        },
    };
    let versioned = format!("{}.root.json", next.version);
    let (doc, by_old) = metadata::sign_doc(&next, old, &versioned)?;
    let (_, by_new) = metadata::sign_doc(&next, new, &versioned)?;
    for (file, text) in [
        (format!("{versioned}.minisig"), by_old.as_bytes()),
        (format!("{versioned}.new.minisig"), by_new.as_bytes()),
        (versioned.clone(), &doc[..]),
    ] {
        let p = dir.join(&file);
        write_public(&p, text).map_err(|e| RepoError::io(&p, e))?;
    }
    write_doc(dir, "root.json", &next, new)?;
    Ok(next)
}
