//! The repositories a root uses, their trusted metadata, refresh, and the
//! download cache.
//!
//! Layout: `system/state/repos.json` (name, URL and pinned root key of each
//! repository), `system/state/repos/NAME/{root,timestamp,index}.json` (the
//! trusted copies: the highest versions seen), `system/state/cache/`
//! (downloaded packages, by SHA-256; `.part` files resume).

use std::path::{Path, PathBuf};

use exos_manifest::Manifest;
use exos_root::{write_atomically, Layout, Sha256};
use exos_trust::PublicKey;
use serde::{Deserialize, Serialize};

use crate::metadata::{self, IndexDoc, IndexEntry, RootDoc, TimestampDoc, MAX_SMALL_DOC};
use crate::transport::{Location, Timeouts, Transport};
use crate::{now, RepoError};
use exos_root::pkgdb::RepoOrigin;

/// One configured repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// The name it is known by (`exos repo add NAME`).
    pub name: String,
    /// Where it is (`file://`, a path, `http(s)://`).
    pub url: String,
    /// The root key pinned at `exos repo add` (minisign's base64 line).
    pub root_key: String,
    /// A package not installed yet comes from the highest-priority
    /// repositories offering it (installed ones stay on their origin).
    #[serde(default)]
    pub priority: i32,
}

/// `system/state/repos.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// The repositories, in the order they were added.
    pub repositories: Vec<Repository>,
}

impl RepoConfig {
    /// Parses `repos.json`; `file` names it in errors. Names must be valid
    /// and unique, URLs supported, root keys real keys.
    pub fn parse(bytes: &[u8], file: &str) -> Result<RepoConfig, RepoError> {
        let c: RepoConfig = serde_json::from_slice(bytes).map_err(|source| RepoError::Json {
            file: file.to_string(),
            source,
        })?;
        for (i, r) in c.repositories.iter().enumerate() {
            check_name(&r.name).map_err(|e| RepoError::invalid(file, e.to_string()))?;
            if c.repositories[..i].iter().any(|o| o.name == r.name) {
                return Err(RepoError::invalid(
                    file,
                    format!("repository {:?} is listed twice", r.name),
                ));
            }
            Location::parse(&r.url).map_err(|e| RepoError::invalid(file, e.to_string()))?;
            PublicKey::parse(r.root_key.as_bytes()).map_err(|e| {
                RepoError::invalid(file, format!("repository {:?}: root key: {e}", r.name))
            })?;
        }
        Ok(c)
    }
}

/// A package a repository offers, from its trusted, unexpired metadata:
/// the signed index entry, its manifest parsed, and where it is offered.
/// The one description of such a package: resolution takes it as a
/// candidate, downloads fetch it, lazy installs record it.
#[derive(Debug, Clone)]
pub struct OfferedPackage {
    /// The repository offering it and the root key pinned for it.
    pub origin: RepoOrigin,
    /// The repository's priority (`repos.json`).
    pub priority: i32,
    /// The repository's location (`http(s)://…` or `file://…`, absolute).
    pub url: String,
    /// What the signed index says of it.
    pub entry: IndexEntry,
    /// `entry.manifest`, parsed.
    pub manifest: Manifest,
}

impl OfferedPackage {
    /// Its file name in the repository.
    pub fn file(&self) -> &str {
        &self.entry.file
    }

    /// The package's SHA-256, as signed.
    pub fn sha256(&self) -> Sha256 {
        self.entry.sha256
    }

    /// The package's size, as signed.
    pub fn size(&self) -> u64 {
        self.entry.size
    }
}

/// How a package came to be in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// It was there already.
    Cached,
    /// Downloaded whole (`delta_failed`: why a delta that was tried did not do).
    Whole {
        /// Why a delta that was tried did not do, if one was.
        delta_failed: Option<String>,
    },
    /// Rebuilt from an installed older version and a delta of this size.
    Delta {
        /// The delta's size.
        bytes: u64,
    },
}

/// What a refresh found.
#[derive(Debug, Clone, Serialize)]
pub struct Refreshed {
    /// The repository.
    pub name: String,
    /// The trusted root's version.
    pub root_version: u64,
    /// The timestamp's version.
    pub timestamp_version: u64,
    /// The index's version.
    pub index_version: u64,
    /// Packages the index offers.
    pub packages: usize,
    /// Whether a new index was fetched.
    pub index_changed: bool,
    /// When the first of its documents expires (seconds since the epoch).
    pub expires: u64,
}

/// A root's repositories.
pub struct Client {
    /// The root's paths.
    pub layout: Layout,
    /// Network timeouts.
    pub timeouts: Timeouts,
    /// Whose download cache packages go to: the root's, or a user's own
    /// ([`Client::with_cache_of`]).
    pub cache_layout: Layout,
}

fn io(p: &Path, e: std::io::Error) -> RepoError {
    RepoError::io(p, e)
}

fn check_name(name: &str) -> Result<(), RepoError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(RepoError::invalid(
            format!("repository name {name:?}"),
            "letters, digits, '-', '_' and '.', at most 64, not starting with '.'",
        ))
    }
}

fn unexpired(file: &str, expires: u64) -> Result<(), RepoError> {
    if expires <= now() {
        return Err(RepoError::Expired {
            file: file.to_string(),
            at: expires,
        });
    }
    Ok(())
}

impl Client {
    /// The repositories of the root at `root`, with the default timeouts.
    pub fn new(root: &Path) -> Client {
        Client::with_timeouts(root, Timeouts::default())
    }

    /// [`Client::new`] with these network timeouts.
    pub fn with_timeouts(root: &Path, timeouts: Timeouts) -> Client {
        Client {
            layout: Layout::new(root),
            timeouts,
            cache_layout: Layout::new(root),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.layout.state_dir().join("repos.json")
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.layout.state_dir().join("repos").join(name)
    }

    /// This client, with downloads kept in `layout`'s cache: a user's
    /// installs read the root's repositories and download into their own
    /// cache.
    pub fn with_cache_of(mut self, layout: &Layout) -> Client {
        self.cache_layout = layout.clone();
        self
    }

    /// Where downloads are kept until installed.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_layout.cache_dir()
    }

    /// `repos.json`; empty when the root has none.
    pub fn config(&self) -> Result<RepoConfig, RepoError> {
        let path = self.config_path();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RepoConfig::default()),
            Err(e) => return Err(io(&path, e)),
            Ok(_) => {}
        }
        let bytes = exos_trust::read_bounded(&path, 1 << 20)?;
        RepoConfig::parse(&bytes, &path.display().to_string())
    }

    fn write_config(&self, c: &RepoConfig) -> Result<(), RepoError> {
        let path = self.config_path();
        let mut s = serde_json::to_vec_pretty(c).expect("serialisable");
        s.push(b'\n');
        write_atomically(&path, &s).map_err(|e| io(&path, e))
    }

    /// The repository named `name`.
    pub fn repository(&self, name: &str) -> Result<Repository, RepoError> {
        self.config()?
            .repositories
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| RepoError::UnknownRepository(name.to_string()))
    }

    fn transport(&self, r: &Repository) -> Result<Transport, RepoError> {
        Ok(Transport::new(Location::parse(&r.url)?, self.timeouts))
    }

    fn trusted(&self, name: &str, file: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let p = self.repo_dir(name).join(file);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p, e)),
        }
    }

    fn keep(&self, name: &str, file: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let dir = self.repo_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let p = dir.join(file);
        write_atomically(&p, bytes).map_err(|e| io(&p, e))
    }

    /// Fetches a signed document and checks its signature by `keys`.
    fn fetch_signed(
        &self,
        t: &Transport,
        file: &str,
        max: u64,
        keys: &[String],
    ) -> Result<Vec<u8>, RepoError> {
        let what = t.location.describe(file);
        let bytes = t
            .fetch(file, max)?
            .ok_or_else(|| RepoError::invalid(&what, "not found"))?;
        let sig = t
            .fetch(
                &format!("{file}.minisig"),
                exos_trust::minisign::MAX_FILE as u64,
            )?
            .ok_or_else(|| {
                RepoError::untrusted(format!("{what}.minisig"), "not found (unsigned metadata)")
            })?;
        metadata::check_signature(&bytes, &sig, keys, &what)?;
        Ok(bytes)
    }

    /// Adds a repository, pinning `root_key`: its `root.json` must be
    /// signed by that key and list it for the root role. Then refreshes.
    pub fn add(
        &self,
        name: &str,
        url: &str,
        root_key: &PublicKey,
        priority: i32,
    ) -> Result<Refreshed, RepoError> {
        check_name(name)?;
        let mut config = self.config()?;
        if config.repositories.iter().any(|r| r.name == name) {
            return Err(RepoError::RepositoryExists(name.to_string()));
        }
        // A directory is stored as an absolute file:// URL, so the root
        // works from anywhere.
        let url = match Location::parse(url)? {
            Location::Dir(d) => {
                let abs = std::fs::canonicalize(&d).map_err(|e| io(&d, e))?;
                format!("file://{}", abs.display())
            }
            Location::Http(u) => u,
        };
        let repo = Repository {
            name: name.into(),
            url,
            root_key: root_key.to_base64(),
            priority,
        };
        let t = self.transport(&repo)?;
        let bytes = self.fetch_signed(
            &t,
            "root.json",
            MAX_SMALL_DOC,
            std::slice::from_ref(&repo.root_key),
        )?;
        let root = metadata::parse_root(&bytes, &t.location.describe("root.json"))?;
        if !root.keys.root.contains(&repo.root_key) {
            return Err(RepoError::untrusted(
                t.location.describe("root.json"),
                format!("the pinned key {} is not among its root keys", root_key.id),
            ));
        }
        unexpired(&t.location.describe("root.json"), root.expires)?;
        // Start clean: nothing left from an earlier repository of this name.
        let dir = self.repo_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        self.keep(name, "root.json", &bytes)?;
        config.repositories.push(repo);
        self.write_config(&config)?;
        match self.refresh(name) {
            Ok(r) => Ok(r),
            Err(e) => {
                // Not added when its metadata cannot be trusted.
                let _ = self.remove(name);
                Err(e)
            }
        }
    }

    /// Forgets a repository and its trusted metadata.
    pub fn remove(&self, name: &str) -> Result<(), RepoError> {
        let mut config = self.config()?;
        let before = config.repositories.len();
        config.repositories.retain(|r| r.name != name);
        if config.repositories.len() == before {
            return Err(RepoError::UnknownRepository(name.to_string()));
        }
        self.write_config(&config)?;
        let dir = self.repo_dir(name);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn trusted_root(&self, name: &str) -> Result<RootDoc, RepoError> {
        let bytes = self
            .trusted(name, "root.json")?
            .ok_or_else(|| RepoError::NoTrustedRoot(name.to_string()))?;
        metadata::parse_root(
            &bytes,
            &self.repo_dir(name).join("root.json").display().to_string(),
        )
    }

    fn trusted_timestamp(&self, name: &str) -> Result<Option<TimestampDoc>, RepoError> {
        self.trusted(name, "timestamp.json")?
            .map(|b| metadata::parse_timestamp(&b, "timestamp.json"))
            .transpose()
    }

    fn trusted_index(&self, name: &str) -> Result<Option<(IndexDoc, Sha256)>, RepoError> {
        self.trusted(name, "index.json")?
            .map(|b| {
                Ok((
                    metadata::parse_index(&b, "index.json")?,
                    Sha256::of_bytes(&b),
                ))
            })
            .transpose()
    }

    /// Updates a repository's trusted metadata: a newer root (signed by the
    /// current root's keys), then the timestamp, then — if it names another
    /// index — the index. Each version must not go down; each document
    /// must be unexpired; the index must be exactly the one the timestamp
    /// names. The new timestamp is recorded before the index is fetched.
    pub fn refresh(&self, name: &str) -> Result<Refreshed, RepoError> {
        let repo = self.repository(name)?;
        let t = self.transport(&repo)?;
        // 1. Root: follow the chain of rotations, each version signed by
        // the previous root's key and by its own new key.
        let mut root = self.trusted_root(name)?;
        for _ in 0..1024 {
            let v = root.version + 1;
            let file = format!("{v}.root.json");
            let Some(bytes) = t.fetch(&file, MAX_SMALL_DOC)? else {
                break;
            };
            let what = t.location.describe(&file);
            let sig = t
                .fetch(
                    &format!("{file}.minisig"),
                    exos_trust::minisign::MAX_FILE as u64,
                )?
                .ok_or_else(|| RepoError::untrusted(format!("{what}.minisig"), "not found"))?;
            metadata::check_signature(&bytes, &sig, &root.keys.root, &what)?;
            let next = metadata::parse_root(&bytes, &what)?;
            let own = t
                .fetch(
                    &format!("{file}.new.minisig"),
                    exos_trust::minisign::MAX_FILE as u64,
                )?
                .ok_or_else(|| {
                    RepoError::untrusted(
                        format!("{what}.new.minisig"),
                        "not found (a new root must also be signed by its own key)",
                    )
                })?;
            metadata::check_signature(&bytes, &own, &next.keys.root, &what)?;
            if next.version != v {
                return Err(RepoError::untrusted(
                    what,
                    format!("says version {}, expected {v}", next.version),
                ));
            }
            self.keep(name, "root.json", &bytes)?;
            root = next;
        }
        let bytes = self.fetch_signed(&t, "root.json", MAX_SMALL_DOC, &root.keys.root)?;
        let served = metadata::parse_root(&bytes, &t.location.describe("root.json"))?;
        if served.version < root.version {
            return Err(RepoError::untrusted(
                t.location.describe("root.json"),
                format!(
                    "version {} is older than version {} already seen (a rollback)",
                    served.version, root.version
                ),
            ));
        }
        // A newer root is taken only through the chain above (each link
        // signed by the old and the new root key): one served directly,
        // signed by the current root key alone, is refused.
        if served.version > root.version {
            return Err(RepoError::untrusted(t.location.describe("root.json"), format!("version {} is newer than the trusted version {}, but no {}.root.json link signed by the current root key and by the new one leads to it (a root is replaced only through such links)", served.version, root.version, root.version + 1)));
        }
        if served != root {
            return Err(RepoError::untrusted(
                t.location.describe("root.json"),
                "changed without a new version",
            ));
        }
        unexpired(&t.location.describe("root.json"), root.expires)?;
        // 2. Timestamp.
        let ts_what = t.location.describe("timestamp.json");
        let bytes = self.fetch_signed(&t, "timestamp.json", MAX_SMALL_DOC, &root.keys.timestamp)?;
        let ts = metadata::parse_timestamp(&bytes, &ts_what)?;
        let old_ts = self.trusted_timestamp(name)?;
        if let Some(old) = &old_ts {
            if ts.version < old.version {
                return Err(RepoError::untrusted(
                    ts_what,
                    format!(
                        "version {} is older than version {} already seen (a rollback)",
                        ts.version, old.version
                    ),
                ));
            }
            if ts.version == old.version && ts != *old {
                return Err(RepoError::untrusted(
                    ts_what,
                    "changed without a new version",
                ));
            }
        }
        unexpired(&ts_what, ts.expires)?;
        let old_index = self.trusted_index(name)?;
        if let Some((idx, _)) = &old_index {
            if ts.index.version < idx.version {
                return Err(RepoError::untrusted(
                    ts_what,
                    format!(
                        "names index version {}, older than version {} already seen (a rollback)",
                        ts.index.version, idx.version
                    ),
                ));
            }
        }
        // Recorded before anything it names is fetched or trusted.
        self.keep(name, "timestamp.json", &bytes)?;
        // 3. Index, if another one.
        let unchanged = old_index
            .as_ref()
            .is_some_and(|(_, sha)| *sha == ts.index.sha256);
        let index = if unchanged {
            old_index.expect("checked").0
        } else {
            let what = t.location.describe("index.json");
            let bytes = self.fetch_signed(&t, "index.json", ts.index.size, &root.keys.index)?;
            if bytes.len() as u64 != ts.index.size || Sha256::of_bytes(&bytes) != ts.index.sha256 {
                return Err(RepoError::untrusted(what, "not the index the timestamp names (size or SHA-256 differ: a mix of old and new metadata)"));
            }
            let idx = metadata::parse_index(&bytes, &what)?;
            if idx.version != ts.index.version {
                return Err(RepoError::untrusted(
                    what,
                    format!(
                        "version {}, but the timestamp names version {}",
                        idx.version, ts.index.version
                    ),
                ));
            }
            self.keep(name, "index.json", &bytes)?;
            idx
        };
        unexpired(&t.location.describe("index.json"), index.expires)?;
        Ok(Refreshed {
            name: name.into(),
            root_version: root.version,
            timestamp_version: ts.version,
            index_version: index.version,
            packages: index.packages.len(),
            index_changed: !unchanged,
            expires: ts.expires.min(index.expires).min(root.expires),
        })
    }

    /// When `name`'s metadata was last refreshed (seconds since the epoch:
    /// when its timestamp was last fetched and checked); `None` if never.
    pub fn refreshed_at(&self, name: &str) -> Option<u64> {
        let kept = self.repo_dir(name).join("timestamp.json");
        let modified = std::fs::symlink_metadata(kept).ok()?.modified().ok()?;
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }

    /// The packages every repository offers, from trusted, unexpired
    /// metadata (refresh first to update it).
    pub fn offered(&self) -> Result<Vec<OfferedPackage>, RepoError> {
        let mut out = Vec::new();
        for r in self.config()?.repositories {
            let root = self.trusted_root(&r.name)?;
            let ts = self
                .trusted_timestamp(&r.name)?
                .ok_or_else(|| RepoError::NeverRefreshed(r.name.clone()))?;
            let (index, _) = self
                .trusted_index(&r.name)?
                .ok_or_else(|| RepoError::NeverRefreshed(r.name.clone()))?;
            let label = |f: &str| format!("{} ({f})", r.name);
            unexpired(&label("root.json"), root.expires)?;
            unexpired(&label("timestamp.json"), ts.expires)?;
            unexpired(&label("index.json"), index.expires)?;
            let origin = RepoOrigin {
                repository: r.name.clone(),
                key: r.root_key.clone(),
            };
            for entry in index.packages {
                let text = entry.manifest.to_string();
                let manifest =
                    Manifest::parse(text.as_bytes(), &format!("{}: {}", r.name, entry.file))?;
                out.push(OfferedPackage {
                    origin: origin.clone(),
                    priority: r.priority,
                    url: r.url.clone(),
                    entry,
                    manifest,
                });
            }
        }
        Ok(out)
    }

    /// Fetches and checks a package's block map against the signed
    /// index's reference (size, SHA-256) and the package size.
    pub fn block_map(&self, p: &OfferedPackage) -> Result<crate::BlockMap, RepoError> {
        let Some(reference) = p.entry.blocks else {
            return Err(RepoError::invalid(
                &p.origin.repository,
                format!(
                    "{} has no block map in the index (republish with a newer exos repo index)",
                    p.file()
                ),
            ));
        };
        let repo = self.repository(&p.origin.repository)?;
        let t = self.transport(&repo)?;
        let file = format!("{}.blocks", p.file());
        let what = t.location.describe(&file);
        let bytes = t
            .fetch(&file, reference.size)?
            .ok_or_else(|| RepoError::network(what.clone(), crate::NetworkFailure::NotFound))?;
        let got = Sha256::of_bytes(&bytes);
        if bytes.len() as u64 != reference.size || got != reference.sha256 {
            return Err(RepoError::untrusted(
                what,
                format!(
                    "SHA-256 {got}, but the signed index says {}",
                    reference.sha256
                ),
            ));
        }
        crate::BlockMap::parse(&bytes, &what, p.size())
    }

    /// Where a package is cached once downloaded (and its signature beside it).
    pub fn cached(&self, sha256: &Sha256) -> PathBuf {
        self.cache_layout.download(sha256)
    }

    /// Downloads a package into the cache (resuming a partial download),
    /// checks its size and SHA-256, and fetches its signature if published.
    /// Returns the file and its digests.
    pub fn download(
        &self,
        p: &OfferedPackage,
        progress: &dyn Fn(u64),
    ) -> Result<(PathBuf, exos_trust::FileDigest), RepoError> {
        self.download_with_deltas(p, &|_| None, progress)
            .map(|(path, d, _)| (path, d))
    }

    /// [`Client::download`], but first through a published delta from an
    /// older version `have` finds locally (by SHA-256). Whatever goes wrong
    /// with a delta — missing, corrupt, not applying, not giving the
    /// package the index names — the package is downloaded whole instead:
    /// a delta never makes a download fail.
    pub fn download_with_deltas(
        &self,
        p: &OfferedPackage,
        have: &dyn Fn(&Sha256) -> Option<PathBuf>,
        progress: &dyn Fn(u64),
    ) -> Result<(PathBuf, exos_trust::FileDigest, Fetched), RepoError> {
        let dest = self.cached(&p.sha256());
        if dest.is_file() {
            // A cached file counts only if it still is what the index says.
            let d = exos_trust::FileDigest::of_file(&dest).map_err(|e| io(&dest, e))?;
            if d.sha256 == p.sha256() {
                progress(p.size());
                return Ok((dest, d, Fetched::Cached));
            }
            std::fs::remove_file(&dest).map_err(|e| io(&dest, e))?;
        }
        let dir = self.cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let repo = self.repository(&p.origin.repository)?;
        let t = self.transport(&repo)?;
        let mut delta_failed = None;
        if let Some((d, old)) = p
            .entry
            .deltas
            .iter()
            .find_map(|d| have(&d.from).map(|old| (d, old)))
        {
            match self.via_delta(&t, p, d, &old, &dir) {
                Ok(digest) => {
                    progress(p.size());
                    self.fetch_signature(&t, p, &dest)?;
                    std::fs::rename(dir.join(format!("{}.hpkg.delta-part", p.sha256())), &dest)
                        .map_err(|e| io(&dest, e))?;
                    return Ok((dest, digest, Fetched::Delta { bytes: d.size }));
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: delta not used, downloading the package whole: {e}",
                        p.file()
                    );
                    delta_failed = Some(e.to_string());
                }
            }
        }
        let part = dir.join(format!("{}.hpkg.part", p.sha256()));
        let digest = t.download(p.file(), p.size(), &part, progress)?;
        let got = digest.sha256;
        if got != p.sha256() {
            let _ = std::fs::remove_file(&part);
            return Err(RepoError::untrusted(t.location.describe(p.file()), format!("SHA-256 {got}, but the signed index says {} (a corrupted or substituted file; nothing was installed)", p.sha256())));
        }
        self.fetch_signature(&t, p, &dest)?;
        std::fs::rename(&part, &dest).map_err(|e| io(&dest, e))?;
        Ok((dest, digest, Fetched::Whole { delta_failed }))
    }

    /// Fetches a delta (checked against the signed index) and rebuilds the
    /// package from `old` into `DIR/SHA.hpkg.delta-part`, checked again
    /// against the index's SHA-256.
    fn via_delta(
        &self,
        t: &Transport,
        p: &OfferedPackage,
        d: &crate::metadata::DeltaRef,
        old: &Path,
        dir: &Path,
    ) -> Result<exos_trust::FileDigest, RepoError> {
        if d.file.is_empty() || d.file.contains('/') || d.file.starts_with('.') {
            return Err(RepoError::invalid(
                &p.origin.repository,
                format!("delta file name {:?} is not a plain file name", d.file),
            ));
        }
        let part = dir.join(format!("{}.delta.part", d.sha256));
        let got = t.download(&d.file, d.size, &part, &|_| {});
        let result = (|| {
            let got = got?;
            if got.sha256 != d.sha256 {
                return Err(RepoError::untrusted(
                    t.location.describe(&d.file),
                    format!(
                        "SHA-256 {}, but the signed index says {}",
                        got.sha256, d.sha256
                    ),
                ));
            }
            let out = dir.join(format!("{}.hpkg.delta-part", p.sha256()));
            exos_delta::apply(old, &part, &out).map_err(|source| RepoError::Delta {
                file: d.file.clone(),
                source: Box::new(source),
            })?;
            let digest = exos_trust::FileDigest::of_file(&out).map_err(|e| io(&out, e))?;
            if digest.sha256 != p.sha256() {
                let _ = std::fs::remove_file(&out);
                return Err(RepoError::untrusted(
                    &d.file,
                    format!(
                        "rebuilds a package with SHA-256 {}, but the signed index says {}",
                        digest.sha256,
                        p.sha256()
                    ),
                ));
            }
            Ok(digest)
        })();
        let _ = std::fs::remove_file(&part);
        result
    }

    fn fetch_signature(
        &self,
        t: &Transport,
        p: &OfferedPackage,
        dest: &Path,
    ) -> Result<(), RepoError> {
        if p.entry.signed {
            let sig_file = format!("{}.minisig", p.file());
            if let Some(sig) = t.fetch(&sig_file, exos_trust::minisign::MAX_FILE as u64)? {
                let sig_path = exos_trust::beside(dest);
                write_atomically(&sig_path, &sig).map_err(|e| io(&sig_path, e))?;
            }
        }
        Ok(())
    }
}
