//! A change carried out the way every front end carries it out: the
//! root opened (locked and recovered, unless a dry run), the repositories'
//! offers added, the plan made, the user asked when it removes what was not
//! named, lazy installs recorded, downloads fetched (deltas first) and
//! admitted, the plan committed. A front end implements [`Frontend`] —
//! answers and progress — and renders the [`Change`] it gets back; it
//! decides nothing a library could.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use exos_repo::{Client, Fetched, OfferedPackage, Timeouts};
use exos_root::Sha256;
use exos_trust::FileDigest;

use crate::{AdmittedPlan, Error, Plan, Result, Root, Transaction};

/// What a front end does for a change.
pub trait Frontend: Sync {
    /// Whether to go ahead with a plan that removes installed packages the
    /// request did not name (apt's "Do you want to continue?"); false where
    /// nobody can be asked. `root` tells where the plan's files are.
    fn confirm(&self, root: &Root, plan: &Plan) -> bool;
    /// Something the user should know.
    fn event(&self, event: Event);
    /// Progress of downloading `total` bytes of `count` packages.
    fn downloading(&self, count: usize, total: u64) -> Box<dyn Progress + '_>;
}

/// Progress of downloads, fed from several threads.
pub trait Progress: Sync {
    /// Counts `bytes` more received.
    fn advance(&self, bytes: u64);
    /// All downloads ended.
    fn finish(&self);
}

/// What happened along the way, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An interrupted change was tidied up first.
    Recovered(String),
    /// An offered package was not taken (another origin, …).
    Note(String),
    /// A published delta could not be used: the package was downloaded
    /// whole.
    DeltaNotUsed {
        /// The package file.
        file: String,
        /// Why the delta failed.
        why: String,
    },
    /// A package was rebuilt from a delta of `delta` bytes instead of
    /// downloading its `size`.
    RebuiltFromDelta {
        /// The package file.
        file: String,
        /// Bytes of the delta fetched.
        delta: u64,
        /// Bytes of the package.
        size: u64,
    },
    /// Downloads done: `fetched` bytes for `packages` packages (`by_delta`
    /// of them rebuilt from deltas) that weigh `total`.
    Downloaded {
        /// Packages downloaded or rebuilt.
        packages: usize,
        /// Bytes fetched.
        fetched: u64,
        /// Packages rebuilt from deltas.
        by_delta: usize,
        /// Bytes of the packages.
        total: u64,
    },
    /// A repository's metadata was older than the maximum age and was
    /// refreshed.
    Refreshed {
        /// The repository.
        repository: String,
        /// Whether it now offers a new index.
        index_changed: bool,
    },
    /// A repository's metadata was older than the maximum age, but could
    /// not be refreshed: what it last said is used while it is unexpired.
    RefreshFailed(StaleRepository),
    /// `packages` packages were installed before and are still in the
    /// root's store: taken from there, not downloaded.
    FromStore {
        /// Packages taken from the store.
        packages: usize,
    },
    /// `packages` packages installed lazily, their blocks cached in `cache`.
    Lazy {
        /// Packages installed lazily.
        packages: usize,
        /// The block cache.
        cache: PathBuf,
    },
}

/// How a change is carried out.
#[derive(Debug, Clone, Default)]
pub struct ChangeOptions {
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// Go ahead when the plan removes what was not named.
    pub yes: bool,
    /// Apply exactly what was asked, essential packages included.
    pub force: bool,
    /// Install packages from repositories lazily (blocks fetched when read).
    pub lazy: bool,
    /// Take the repositories' offers into account.
    pub repositories: bool,
    /// Change this user's own installs (their layer and states), resolved
    /// against the root's shared layers, instead of the root's.
    pub user: Option<exos_root::UserName>,
}

/// What a change needs from its surroundings, resolved once by the front
/// end (never read from the environment here).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The block cache of lazy installs; `None`: none (lazy installs fail).
    pub block_cache: Option<PathBuf>,
    /// Network timeouts.
    pub timeouts: Timeouts,
}

/// A repository whose metadata is older than the maximum age and could
/// not be refreshed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaleRepository {
    /// The repository.
    pub repository: String,
    /// When its metadata was last refreshed (seconds since the epoch), if
    /// ever.
    pub refreshed: Option<u64>,
    /// Why the refresh failed.
    pub why: String,
}

/// What the repositories' metadata was like when a change began.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetadataFreshness {
    /// Repositories configured.
    pub repositories: usize,
    /// Repositories whose metadata is stale (refresh failed).
    pub stale: Vec<StaleRepository>,
}

/// Refreshes every repository of the root at `path` whose metadata is
/// older than `max_age` (all of them when `max_age` is zero; none when
/// `None`), as flatpak refreshes before it installs and dnf when its
/// metadata expired. A failed refresh is not an error: the change goes on
/// with what the repository last said (an offline install from what is
/// known), and the repository is reported stale.
pub fn refresh_stale(
    path: &Path,
    max_age: Option<std::time::Duration>,
    timeouts: Timeouts,
    frontend: &dyn Frontend,
) -> Result<MetadataFreshness> {
    let client = Client::with_timeouts(path, timeouts);
    let repositories = client.config()?.repositories;
    let mut freshness = MetadataFreshness {
        repositories: repositories.len(),
        stale: Vec::new(),
    };
    let Some(max_age) = max_age else {
        return Ok(freshness);
    };
    let now = exos_repo::now();
    for r in repositories {
        let refreshed = client.refreshed_at(&r.name);
        let fresh = refreshed.is_some_and(|t| now.saturating_sub(t) < max_age.as_secs());
        if fresh && !max_age.is_zero() {
            continue;
        }
        match client.refresh(&r.name) {
            Ok(done) => frontend.event(Event::Refreshed {
                repository: r.name,
                index_changed: done.index_changed,
            }),
            Err(e) => {
                let stale = StaleRepository {
                    repository: r.name,
                    refreshed,
                    why: error_chain(&e),
                };
                frontend.event(Event::RefreshFailed(stale.clone()));
                freshness.stale.push(stale);
            }
        }
    }
    Ok(freshness)
}

/// `e` and its causes on one line, a cause its message already holds not
/// repeated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        cause = c.source();
    }
    text
}

/// How a change ended.
#[derive(Debug)]
pub enum Outcome {
    /// The plan changes nothing.
    Unchanged(Plan),
    /// A dry run: the plan, not carried out.
    DryRun(Plan),
    /// Committed as this state.
    Committed {
        /// The new state's number.
        state: u64,
        /// What it did.
        plan: AdmittedPlan,
    },
}

impl Outcome {
    /// The plan, whatever the outcome.
    pub fn plan(&self) -> &Plan {
        match self {
            Outcome::Unchanged(p) | Outcome::DryRun(p) => p,
            Outcome::Committed { plan, .. } => plan.plan(),
        }
    }
}

/// A change's root (for rendering: where its files are) and outcome.
pub struct Change {
    /// The root, still locked.
    pub root: Root,
    /// How it ended.
    pub outcome: Outcome,
}

/// Carries out `tx` on the root at `path` (see the module documentation).
pub fn change(
    path: &Path,
    mut tx: Transaction,
    options: &ChangeOptions,
    settings: &Settings,
    frontend: &dyn Frontend,
) -> Result<Change> {
    let layout = match &options.user {
        Some(user) => exos_root::Layout::for_user(path, user.clone()),
        None => exos_root::Layout::new(path),
    };
    if options.user.is_some() && options.lazy {
        return Err(Error::invalid(
            "a lazy install into a user's own layer",
            "lazy packages are served from the root's own records; a user's layer takes whole packages",
        ));
    }
    let root = if options.dry_run {
        Root::read_only_layout(layout)?
    } else {
        let r = match &options.user {
            Some(user) => Root::init_user(path, user)?,
            None => Root::lock(path)?,
        };
        for note in r.recover()? {
            frontend.event(Event::Recovered(note));
        }
        r
    };
    let client = Client::with_timeouts(path, settings.timeouts).with_cache_of(&root.layout);
    if options.repositories {
        tx.remote = client.offered()?;
    }
    tx.force = options.force;
    let mut plan = tx.plan(&root)?;
    for note in &plan.notes {
        frontend.event(Event::Note(note.clone()));
    }
    if plan.is_empty() {
        // Asking by name for a package installed as a dependency makes it
        // manual, though nothing else changes (as apt does).
        if !options.dry_run && !plan.manual.is_empty() {
            let db = root.package_db()?;
            let newly: Vec<String> = plan
                .manual
                .iter()
                .filter(|n| db.automatic.contains(*n))
                .cloned()
                .collect();
            if !newly.is_empty() {
                root.record(&[], &[], &newly)?;
                frontend.event(Event::Note(format!(
                    "marked as installed by name: {}",
                    newly.join(", ")
                )));
            }
        }
        return Ok(Change {
            root,
            outcome: Outcome::Unchanged(plan),
        });
    }
    if options.dry_run {
        let clashes = plan.layer_clashes(&root);
        for c in &clashes {
            frontend.event(Event::Note(c.clone()));
        }
        plan.notes.extend(clashes);
        return Ok(Change {
            root,
            outcome: Outcome::DryRun(plan),
        });
    }
    let asks = !plan.also_removed.is_empty() && plan.essential_removed.is_empty();
    let yes = options.yes || (asks && frontend.confirm(&root, &plan));
    plan.check_consent(yes, options.force)?;
    if options.lazy && !plan.downloads.is_empty() {
        make_lazy(&root, &mut plan, &client, settings, frontend)?;
    }
    let digests = download(&root, &client, &plan.downloads, frontend)?;
    let clashes = plan.layer_clashes(&root);
    for c in &clashes {
        frontend.event(Event::Note(c.clone()));
    }
    plan.notes.extend(clashes);
    let admitted = plan.admit_downloads(&root, &digests)?;
    let state = root.commit(&admitted)?;
    Ok(Change {
        root,
        outcome: Outcome::Committed {
            state,
            plan: admitted,
        },
    })
}

/// `--lazy`: the plan's downloads become lazy packages — each one's block
/// map fetched and checked against the signed index, sixteen at a time
/// (each a round trip), then its metadata fetched through the block cache
/// and checked ([`Plan::make_lazy`]).
fn make_lazy(
    root: &Root,
    plan: &mut Plan,
    client: &Client,
    settings: &Settings,
    frontend: &dyn Frontend,
) -> Result<()> {
    let dir = settings.block_cache.clone().ok_or(Error::NoBlockCache)?;
    let cache = Arc::new(
        exos_lazy::BlockCache::open(&dir, exos_lazy::cache::DEFAULT_CAPACITY).map_err(
            |source| Error::Io {
                path: dir.clone(),
                source,
            },
        )?,
    );
    let wanted: Vec<&OfferedPackage> = plan.downloads.iter().collect();
    let lazy = parallel(&wanted, 16, |p| -> Result<exos_lazy::LazyPackage> {
        let blocks = client.block_map(p)?;
        Ok(exos_lazy::LazyPackage {
            record: exos_lazy::LazyRecord::of_offered(p),
            blocks,
            path: root.layout.lazy_record(&p.sha256()),
        })
    })?;
    let n = lazy.len();
    plan.make_lazy(root, lazy, &cache, settings.timeouts)?;
    frontend.event(Event::Lazy {
        packages: n,
        cache: dir,
    });
    Ok(())
}

/// Runs `f` on every item, `threads` at a time, in order of the items.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<R>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..items.len().clamp(1, threads))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return out;
                        };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![(usize::MAX, Err(Error::Panicked("download worker")))])
            })
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Downloads `downloads` four at a time (enough to hide latency, few
/// enough not to swamp a mirror), each checked (size, SHA-256) before it
/// counts; a package with a published delta from a version present in the
/// root (or the download cache) is rebuilt from it instead.
fn download(
    root: &Root,
    client: &Client,
    downloads: &[OfferedPackage],
    frontend: &dyn Frontend,
) -> Result<Vec<FileDigest>> {
    if downloads.is_empty() {
        return Ok(Vec::new());
    }
    let local = local_packages(root, client);
    let total: u64 = downloads.iter().map(|d| d.size()).sum();
    let progress = frontend.downloading(downloads.len(), total);
    let from_store = AtomicUsize::new(0);
    let results = parallel(downloads, 4, |d| {
        if let Some(digest) = from_store_copy(root, client, d)? {
            progress.advance(d.size());
            from_store.fetch_add(1, Ordering::Relaxed);
            return Ok((digest, Fetched::Cached));
        }
        let done = AtomicU64::new(0);
        let have = |sha: &Sha256| local.iter().find(|(s, _)| s == sha).map(|(_, p)| p.clone());
        let (_, digest, how) = client.download_with_deltas(d, &have, &|n| {
            let before = done.swap(n, Ordering::Relaxed);
            if n >= before {
                progress.advance(n - before);
            }
        })?;
        Ok((digest, how))
    });
    progress.finish();
    let results = results?;
    let from_store = from_store.into_inner();
    if from_store > 0 {
        frontend.event(Event::FromStore {
            packages: from_store,
        });
    }
    let (mut fetched, mut by_delta) = (0u64, 0usize);
    for (d, (_, how)) in downloads.iter().zip(&results) {
        match how {
            Fetched::Cached => {}
            Fetched::Whole { delta_failed } => {
                fetched += d.size();
                if let Some(why) = delta_failed {
                    frontend.event(Event::DeltaNotUsed {
                        file: d.file().to_string(),
                        why: why.clone(),
                    });
                }
            }
            Fetched::Delta { bytes } => {
                fetched += bytes;
                by_delta += 1;
                frontend.event(Event::RebuiltFromDelta {
                    file: d.file().to_string(),
                    delta: *bytes,
                    size: d.size(),
                });
            }
        }
    }
    frontend.event(Event::Downloaded {
        packages: downloads.len(),
        fetched,
        by_delta,
        total,
    });
    Ok(results.into_iter().map(|(d, _)| d).collect())
}

/// Packages present locally that a delta may apply to: those of the
/// root's current state, and the download cache.
/// A package the root's store still holds (an earlier state had it) is
/// linked into the download cache instead of fetched, with the signature
/// kept for it: what was installed before installs again offline. It is
/// admitted like any download. `None`: not in the store (or the stored
/// copy is not the offered file), or already in the cache.
fn from_store_copy(root: &Root, client: &Client, d: &OfferedPackage) -> Result<Option<FileDigest>> {
    let sha = d.sha256();
    let stored = root.layout.stored(&sha);
    let dest = client.cached(&sha);
    let plain_file = std::fs::symlink_metadata(&stored).is_ok_and(|m| m.is_file());
    if !plain_file || dest.exists() {
        return Ok(None);
    }
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let digest = FileDigest::of_file(&stored).map_err(at(&stored))?;
    if digest.sha256 != sha || digest.size != d.size() {
        return Ok(None);
    }
    let dir = client.cache_dir();
    std::fs::create_dir_all(&dir).map_err(at(&dir))?;
    let part = dir.join(format!("{sha}.hpkg.from-store"));
    let _ = std::fs::remove_file(&part);
    if std::fs::hard_link(&stored, &part).is_err() {
        std::fs::copy(&stored, &part).map_err(at(&part))?;
    }
    let signature = root.layout.signature(&sha);
    if signature.is_file() {
        let beside = exos_trust::beside(&dest);
        std::fs::copy(&signature, &beside).map_err(at(&beside))?;
    }
    std::fs::rename(&part, &dest).map_err(at(&dest))?;
    Ok(Some(digest))
}

fn local_packages(root: &Root, client: &Client) -> Vec<(Sha256, PathBuf)> {
    let mut v = Vec::new();
    if let Ok(current) = root.current() {
        for e in &current.entries {
            if let Some(p) = root.locate(e) {
                v.push((e.sha256, p));
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(client.cache_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(sha) = name
                .strip_suffix(".hpkg")
                .and_then(|s| s.parse::<Sha256>().ok())
            {
                v.push((sha, e.path()));
            }
        }
    }
    v
}
