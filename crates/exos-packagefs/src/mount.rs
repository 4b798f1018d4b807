//! Mounting: scan, build the view, serve it over FUSE on several threads,
//! and rebuild it live when package files come and go.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exos_manifest::Provide;
use fuser::{Config, MountOption, Notifier, Session, SessionACL, SessionUnmounter};
use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use exos_root::{Layer, PerLayer, Sha256};

use crate::activate::{Activation, ActivePackage, Owner, Scanner, DEFAULT_MEMORY_BUDGET};
use crate::cache::ChunkCache;
use crate::fs::{OrphanKeeper, PackageFs, ViewSlot, XattrPolicy};
use crate::view::{Privileges, View, ViewSettings};
use exos_root::digests::ContentDigests;

/// How changes to the packages directories are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify; falls back to polling if the kernel refuses a watch.
    Inotify,
    /// Rescan at this interval (for file systems without inotify, e.g. NFS).
    Poll(Duration),
}

/// Polling interval after inotify failed.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Whether requests reach the daemon through FUSE over io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoUringMode {
    /// When the kernel offers it (see [`io_uring_available`]).
    #[default]
    Auto,
    /// Refuse to mount without it.
    Always,
    /// `/dev/fuse` only.
    Never,
}

/// Entries per CPU queue with FUSE over io_uring: requests from one CPU in
/// flight at once (the kernel's default background limit is 12, and one
/// process rarely has more than a few synchronous ones).
pub const IO_URING_DEPTH: usize = 8;

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";
const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// Whether this kernel will hand FUSE requests over io_uring (Linux 6.14+):
/// the `fuse` module must have `enable_uring` set (off by default) and
/// io_uring must be allowed for this process. Err says why not and how to
/// turn it on.
pub fn io_uring_available() -> Result<(), String> {
    match std::fs::read_to_string(ENABLE_URING) {
        Err(_) => {
            return Err(format!(
                "this kernel has no FUSE over io_uring ({ENABLE_URING} is missing: Linux 6.14 or later with CONFIG_FUSE_IO_URING)"
            ))
        }
        Ok(v) if v.trim() != "Y" && v.trim() != "1" => {
            return Err(format!(
                "FUSE over io_uring is off in the kernel: as root, `echo 1 > {ENABLE_URING}` (or boot with fuse.enable_uring=1)"
            ))
        }
        Ok(_) => {}
    }
    let disabled = std::fs::read_to_string(IO_URING_DISABLED)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    match disabled {
        0 => Ok(()),
        1 if rustix::process::geteuid().is_root() => Ok(()),
        _ => Err(format!(
            "io_uring is disabled for this process ({IO_URING_DISABLED} = {disabled})"
        )),
    }
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub root: PathBuf,
    pub mountpoint: PathBuf,
    /// Decompressed-chunk cache, in bytes, shared by all packages.
    pub cache_bytes: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// How long the kernel may cache names and attributes.
    pub ttl: Duration,
    pub host_apis: Vec<Provide>,
    /// Let users other than root see the mount (per-user views need it).
    pub allow_other: bool,
    /// Mount this state list instead of the root's current one (booting an
    /// older state without changing the current one).
    pub state_list: Option<PathBuf>,
    /// Setuid/setgid from the system layer (mounts `suid`); off by default.
    pub privileges: Privileges,
    /// Memory all active packages together may cost.
    pub memory_budget: u64,
    pub watch: WatchMode,
    pub xattrs: XattrPolicy,
    /// Compute content digests in the background and serve identical files
    /// of different packages as one inode (one copy in the page cache).
    pub share_identical: bool,
    /// The persistent exec cache: its directory and size limit in bytes
    /// (off by default; see [`crate::exec_cache`]).
    pub exec_cache: Option<(PathBuf, u64)>,
    /// How the exec cache's programs are served (reads by default).
    pub exec_cache_serve: crate::exec_cache::ExecCacheServe,
    /// Where lazily installed packages keep fetched blocks, and its bound.
    /// `None`: lazily installed packages are refused, saying why.
    pub block_cache: Option<(PathBuf, u64)>,
    /// Network timeouts for lazily installed packages.
    pub timeouts: exos_repo::Timeouts,
    /// Fetch every block of lazily installed packages in the background
    /// (readers still go first: theirs are separate requests), so the
    /// mount soon works offline and a full read runs at the link's speed.
    pub prefetch: bool,
    pub io_uring: IoUringMode,
    /// Keys for sealed packages, and the layers they serve.
    pub keys: crate::activate::MountKeys,
}

impl MountOptions {
    pub fn new(root: PathBuf, mountpoint: PathBuf) -> MountOptions {
        MountOptions {
            root,
            mountpoint,
            // Small on purpose: the kernel's page cache keeps file data;
            // this one only spares re-decompressing a chunk shared by
            // several small files or hit by scattered reads. A big one
            // costs fresh (zeroed) pages for every chunk.
            cache_bytes: 8 << 20,
            threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
            // Changes are pushed to the kernel as invalidations, so the
            // kernel may cache names and attributes for long.
            ttl: Duration::from_secs(60),
            host_apis: Vec::new(),
            allow_other: true,
            state_list: None,
            privileges: Privileges::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            watch: WatchMode::Inotify,
            xattrs: XattrPolicy::Auto,
            share_identical: true,
            exec_cache: None,
            exec_cache_serve: Default::default(),
            block_cache: None,
            timeouts: Default::default(),
            prefetch: false,
            io_uring: IoUringMode::Auto,
            keys: Default::default(),
        }
    }

    /// The mount flags, as `findmnt` shows them (besides `rw`/`ro`).
    pub fn mount_flags(&self) -> Vec<MountOption> {
        vec![
            MountOption::FSName(format!("exos:{}", self.root.display())),
            MountOption::Subtype("exos".into()),
            MountOption::RO,
            MountOption::Exec,
            if self.privileges.setuid_from_system {
                MountOption::Suid
            } else {
                MountOption::NoSuid
            },
            MountOption::NoDev,
            MountOption::DefaultPermissions,
        ]
    }
}

/// A summary of one (re)build, for logs and `exos mount` output.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub generation: u64,
    pub active: usize,
    pub refused: Vec<(PathBuf, String)>,
    pub conflicts: usize,
    pub nodes: usize,
    pub view_bytes: usize,
    pub seconds: f64,
    /// False when the rescan found nothing changed (no new view).
    pub changed: bool,
}

/// `.exos/status.json`: what `exos status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub root: PathBuf,
    pub state_list: Option<PathBuf>,
    pub mountpoint: PathBuf,
    pub pid: u32,
    pub generation: u64,
    /// Seconds since the epoch of the last rebuild.
    pub updated: u64,
    pub layers: PerLayer<Vec<ActiveStatus>>,
    pub refused: Vec<RefusedStatus>,
    pub conflicts: Vec<ConflictStatus>,
    /// Who owns each layer's files in the view.
    pub owners: PerLayer<Owner>,
    /// The per-user layers, by user.
    #[serde(default)]
    pub users: Vec<UserLayerStatus>,
    /// Identical files shared as one inode: whether on, and how many active
    /// packages have their content digests yet.
    #[serde(default)]
    pub sharing: SharingStatus,
    /// The block cache of lazily installed packages.
    #[serde(default)]
    pub block_cache: Option<PathBuf>,
    /// Runtime overlays shown over active packages (`exos overlay`).
    #[serde(default)]
    pub overlays: Vec<OverlayStatus>,
    pub security: SecurityStatus,
    pub memory: MemoryStatus,
    pub live: LiveStatus,
    /// Missing from mounts started by older versions: read as `dev_fuse`.
    #[serde(default)]
    pub transport: TransportStatus,
    /// The exec cache, when the mount has one.
    #[serde(default)]
    pub exec_cache: Option<ExecCacheStatus>,
    pub cache_bytes: u64,
    pub nodes: usize,
    pub index_bytes: usize,
}

/// Where a mount keeps decompressed programs, and how it serves them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecCacheStatus {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub serve: crate::exec_cache::ExecCacheServe,
}

/// A runtime overlay in effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayStatus {
    pub package: String,
    pub layer: Layer,
    pub dir: PathBuf,
    /// Files, directories and symlinks in it.
    pub entries: usize,
    /// Added with --force to a layer that requires signed content.
    pub forced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveStatus {
    pub file: String,
    pub name: String,
    pub version: String,
    pub sha256: Option<Sha256>,
    /// The trusted key whose signature admitted it (layers that require one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Memory this package costs the mount.
    pub memory_bytes: u64,
    /// The version as its origin wrote it (an imported Debian package's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_version: Option<String>,
    /// Installed lazily: where its blocks are fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_from: Option<String>,
    /// For a lazy package, its blocks and how many are cached: filled in
    /// by `exos status` when it reads the block cache (the mount's
    /// status file does not change as blocks arrive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_blocks: Option<LazyBlocks>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LazyBlocks {
    pub blocks: u64,
    pub cached: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SharingStatus {
    pub enabled: bool,
    pub packages_digested: usize,
    pub packages: usize,
}

/// A per-user layer (`ROOT/users/NAME/packages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserLayerStatus {
    pub user: exos_root::UserName,
    /// Who its files belong to: the owner of its packages directory.
    pub owner: Owner,
    pub packages: Vec<ActiveStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedStatus {
    pub layer: Layer,
    pub file: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictStatus {
    pub layer: Layer,
    /// Path inside the layer.
    pub path: String,
    pub winner: String,
    pub loser: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityStatus {
    /// The mount ignores setuid/setgid bits (`nosuid`).
    pub nosuid: bool,
    /// Device files are never served (`nodev`).
    pub nodev: bool,
    /// Per layer: whether setuid/setgid bits are served.
    pub setuid: PerLayer<bool>,
    /// Package keys the mount holds, and the layers they decrypt packages
    /// of (never a user's own layer).
    #[serde(default)]
    pub keys: KeysStatus,
}

/// The keys of a mount (`exos mount --key`, `--key-layers`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeysStatus {
    /// How many keys.
    pub count: usize,
    /// The layers they serve.
    pub layers: Vec<Layer>,
}

/// How the kernel's requests reach the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// FUSE over io_uring: a queue per CPU, served by a thread on that CPU.
    IoUring,
    /// `read(2)`/`write(2)` on `/dev/fuse` by a pool of threads.
    DevFuse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportStatus {
    pub kind: TransportKind,
    /// io_uring: queues (one per possible CPU) and entries per queue.
    pub queues: Option<usize>,
    pub depth: Option<usize>,
    /// Why `/dev/fuse` is used, when io_uring was not turned off on purpose.
    pub reason: Option<String>,
}

impl Default for TransportStatus {
    fn default() -> TransportStatus {
        TransportStatus::dev_fuse(None)
    }
}

impl TransportStatus {
    fn dev_fuse(reason: Option<String>) -> TransportStatus {
        TransportStatus {
            kind: TransportKind::DevFuse,
            queues: None,
            depth: None,
            reason,
        }
    }

    /// What a mount with `mode` will use, as far as the kernel's settings
    /// tell before mounting (the session confirms it at FUSE_INIT).
    fn expected(mode: IoUringMode) -> TransportStatus {
        let dev_fuse = TransportStatus::dev_fuse;
        match mode {
            IoUringMode::Never => dev_fuse(None),
            IoUringMode::Auto | IoUringMode::Always => match io_uring_available() {
                Ok(()) => TransportStatus {
                    kind: TransportKind::IoUring,
                    queues: Some(fuser::io_uring_queue_count()),
                    depth: Some(IO_URING_DEPTH),
                    reason: None,
                },
                Err(why) => dev_fuse(Some(why)),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// What the active packages cost (index, metadata, view).
    pub used_bytes: u64,
    pub budget_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveStatus {
    /// `inotify` or `polling`.
    pub mode: String,
    pub interval_ms: Option<u64>,
    /// Why polling is used, when inotify failed.
    pub reason: Option<String>,
}

struct State {
    scanner: Scanner,
    activation: Activation,
    generation: u64,
    settings: ViewSettings,
    options: MountOptions,
    live: LiveStatus,
    transport: TransportStatus,
}

impl State {
    fn status(&self, activation: &Activation, view: &View) -> Status {
        Status {
            root: self.options.root.clone(),
            state_list: self.options.state_list.clone(),
            mountpoint: self.options.mountpoint.clone(),
            pid: std::process::id(),
            generation: self.generation,
            updated: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            layers: PerLayer::from_fn(|l| {
                activation.layers.get(l).iter().map(active_status).collect()
            }),
            users: activation
                .users
                .iter()
                .map(|(user, packages)| UserLayerStatus {
                    user: user.clone(),
                    owner: packages
                        .first()
                        .and_then(|p| p.user.as_ref().map(|(_, o)| *o))
                        .unwrap_or_default(),
                    packages: packages.iter().map(active_status).collect(),
                })
                .collect(),
            refused: activation
                .refused
                .iter()
                .map(|r| RefusedStatus {
                    layer: r.layer,
                    file: r.path.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            conflicts: view
                .conflicts
                .iter()
                .map(|c| ConflictStatus {
                    layer: c.layer,
                    path: c.path.clone(),
                    winner: c.winner.clone(),
                    loser: c.loser.clone(),
                })
                .collect(),
            owners: view.owners,
            overlays: activation
                .overlays
                .iter()
                .map(|o| OverlayStatus {
                    package: o.package.clone(),
                    layer: o.layer,
                    dir: o.dir.clone(),
                    entries: o.entries.len(),
                    forced: o.forced,
                })
                .collect(),
            block_cache: activation
                .all()
                .any(|p| p.remote.is_some())
                .then(|| self.options.block_cache.as_ref().map(|(d, _)| d.clone()))
                .flatten(),
            sharing: SharingStatus {
                enabled: self.options.share_identical,
                packages_digested: activation
                    .all()
                    .filter(|p| p.digests.get().is_some())
                    .count(),
                packages: activation.all().count(),
            },
            security: SecurityStatus {
                nosuid: !self.options.privileges.setuid_from_system,
                nodev: true,
                setuid: view.setuid,
                keys: KeysStatus {
                    count: self.options.keys.ring.len(),
                    layers: Layer::ALL
                        .into_iter()
                        .filter(|l| *self.options.keys.layers.get(*l))
                        .collect(),
                },
            },
            memory: MemoryStatus {
                used_bytes: activation.memory,
                budget_bytes: self.scanner.memory_budget,
            },
            live: self.live.clone(),
            transport: self.transport.clone(),
            exec_cache: self
                .options
                .exec_cache
                .as_ref()
                .map(|(dir, max_bytes)| ExecCacheStatus {
                    dir: dir.clone(),
                    max_bytes: *max_bytes,
                    serve: self.options.exec_cache_serve,
                }),
            cache_bytes: self.options.cache_bytes,
            nodes: view.node_count(),
            index_bytes: view.memory_usage(),
        }
    }

    /// Rescans; builds a new view (not yet swapped in) unless nothing
    /// changed since the last scan and `force` is false.
    fn rebuild(&mut self, first: bool, force: bool) -> (Option<View>, BuildReport) {
        let t = Instant::now();
        let activation = self
            .scanner
            .scan(if first { None } else { Some(&self.activation) });
        let report = |view: Option<&View>, generation, changed| BuildReport {
            generation,
            active: activation.all().count(),
            refused: activation
                .refused
                .iter()
                .map(|r| (r.path.clone(), r.reason.clone()))
                .collect(),
            conflicts: view.map_or(0, |v| v.conflicts.len()),
            nodes: view.map_or(0, |v| v.node_count()),
            view_bytes: view.map_or(0, |v| v.memory_usage()),
            seconds: t.elapsed().as_secs_f64(),
            changed,
        };
        if !first && !force && same_activation(&self.activation, &activation) {
            return (None, report(None, self.generation, false));
        }
        self.generation += 1;
        let mut view = View::build(&activation, &self.settings);
        let mut status =
            serde_json::to_vec_pretty(&self.status(&activation, &view)).unwrap_or_default();
        status.push(b'\n');
        view.set_status(status);
        let report = report(Some(&view), self.generation, true);
        // Packages that left: their cached chunks are useless now.
        for old in self.activation.all() {
            if !activation.all().any(|p| p.id == old.id) {
                self.scanner.cache.forget_owner(old.id);
            }
        }
        self.activation = activation;
        (Some(view), report)
    }
}

fn active_status(p: &Arc<ActivePackage>) -> ActiveStatus {
    ActiveStatus {
        file: p.file_name.clone(),
        name: p.manifest.name.clone(),
        version: p.manifest.version.to_string(),
        sha256: p.sha256,
        signed_by: p.signed_by.clone(),
        memory_bytes: p.memory,
        original_version: p.manifest.original_version.clone(),
        lazy_from: p.remote.as_ref().map(|r| r.url()),
        lazy_blocks: None,
    }
}

/// Whether two scans activated the same package objects with the same
/// refusals and owners (then the view would be identical).
fn same_activation(a: &Activation, b: &Activation) -> bool {
    let ids = |x: &Activation| x.all().map(|p| p.id).collect::<Vec<_>>();
    let refused = |x: &Activation| {
        x.refused
            .iter()
            .map(|r| (r.layer, r.path.clone(), r.reason.clone()))
            .collect::<Vec<_>>()
    };
    ids(a) == ids(b)
        && a.overlays == b.overlays
        && refused(a) == refused(b)
        && a.owners == b.owners
        && a.root_only == b.root_only
        && a.users
            .iter()
            .map(|(u, _)| u)
            .eq(b.users.iter().map(|(u, _)| u))
}

fn scanner(options: &MountOptions, cache: Arc<ChunkCache>) -> Scanner {
    let mut s = Scanner::new(options.root.clone(), options.host_apis.clone(), cache);
    s.state_list = options.state_list.clone();
    s.memory_budget = options.memory_budget;
    s.block_cache = options.block_cache.clone();
    s.timeouts = options.timeouts;
    s.keys = options.keys.clone();
    s
}

fn new_state(options: &MountOptions) -> State {
    let cache = Arc::new(ChunkCache::new(options.cache_bytes));
    State {
        scanner: scanner(options, cache),
        activation: Activation::default(),
        generation: 0,
        settings: ViewSettings {
            share_identical: options.share_identical,
            ..ViewSettings::new(options.privileges)
        },
        options: options.clone(),
        transport: TransportStatus::expected(options.io_uring),
        live: match options.watch {
            WatchMode::Inotify => LiveStatus {
                mode: "inotify".into(),
                interval_ms: None,
                reason: None,
            },
            WatchMode::Poll(d) => LiveStatus {
                mode: "polling".into(),
                interval_ms: Some(d.as_millis() as u64),
                reason: None,
            },
        },
    }
}

/// Builds the view of `root` once, without mounting (for tests, `--check`
/// and benchmarks of view construction).
pub fn build_view(options: &MountOptions) -> (View, BuildReport) {
    let mut state = new_state(options);
    let (view, report) = state.rebuild(true, true);
    (view.expect("a first build always makes a view"), report)
}

/// A running mount.
pub struct Mount {
    mountpoint: PathBuf,
    unmounter: SessionUnmounter,
    session: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    pub initial: BuildReport,
    /// Receives a report after every live rebuild.
    pub reports: mpsc::Receiver<BuildReport>,
    ended: Ended,
    pushed: Option<Arc<crate::readahead::PushStats>>,
    exec_read_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// What the watcher tells the activation thread.
enum Event {
    /// Something changed: rescan.
    Rescan,
    /// inotify stopped working (e.g. the watch limit): switch to polling.
    Failed(String),
    /// The FUSE session ended: the activation thread exits.
    Stop,
    /// The digester has new content digests: rebuild (inode numbers change).
    Digests,
}

fn polling_status(interval: Duration, reason: Option<String>) -> LiveStatus {
    LiveStatus {
        mode: "polling".into(),
        interval_ms: Some(interval.as_millis() as u64),
        reason,
    }
}

/// The packages directories (the per-user layers' too), the state
/// directory, and their parents (so a packages directory created or
/// replaced later is noticed).
fn watched_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.to_path_buf(), root.join("system/state")];
    for layer in Layer::ALL {
        v.push(root.join(layer.name()));
        v.push(root.join(layer.name()).join("packages"));
    }
    let layout = exos_root::Layout::new(root);
    v.push(layout.users_dir());
    for entry in std::fs::read_dir(layout.users_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(user) = exos_root::UserName::new(entry.file_name().to_string_lossy()) {
            v.push(entry.path());
            v.push(layout.user_packages_dir(&user));
        }
    }
    v
}

fn start_watcher(
    dirs: &[PathBuf],
    tx: mpsc::Sender<Event>,
) -> Result<notify::RecommendedWatcher, String> {
    let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        let event = match e {
            Ok(e) if e.need_rescan() => Event::Rescan,
            Ok(e) if e.kind.is_access() => return,
            Ok(_) => Event::Rescan,
            Err(e) => Event::Failed(e.to_string()),
        };
        let _ = tx.send(event);
    })
    .map_err(|e| e.to_string())?;
    rewatch(&mut w, dirs)?;
    Ok(w)
}

/// (Re-)adds a watch on each directory that exists.
fn rewatch(w: &mut notify::RecommendedWatcher, dirs: &[PathBuf]) -> Result<(), String> {
    for d in dirs.iter().filter(|d| d.is_dir()) {
        let _ = w.unwatch(d);
        w.watch(d, RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(())
}

impl Mount {
    /// Mounts and starts serving. Returns once the mount is visible.
    pub fn start(options: MountOptions) -> std::io::Result<Mount> {
        let mut state = new_state(&options);
        if options.io_uring == IoUringMode::Always {
            if let Some(why) = &state.transport.reason {
                return Err(std::io::Error::other(format!("--io-uring always: {why}")));
            }
        }
        let (view, initial) = state.rebuild(true, true);
        let view = view.expect("a first build always makes a view");
        let exec_cache = match &options.exec_cache {
            Some((dir, max)) => {
                let cache = Arc::new(crate::exec_cache::ExecCache::open(dir, *max)?);
                let verifier = cache.clone();
                std::thread::Builder::new()
                    .name("exos-exec-cache".into())
                    .spawn(move || {
                        // Background work: never ahead of a starting program.
                        let _ = rustix::process::setpriority_process(
                            Some(rustix::thread::gettid()),
                            19,
                        );
                        verifier.verify_all()
                    })?;
                Some(cache)
            }
            None => None,
        };
        let fs = PackageFs::new(view, options.ttl)
            .with_xattrs(options.xattrs)
            .with_exec_cache(exec_cache, options.exec_cache_serve)
            .with_readahead();
        let exec_read_bytes = fs.exec_read_bytes();
        let readahead = fs.readahead();
        let slot = fs.slot();
        let orphans = fs.orphan_keeper();
        let activity = fs.activity();

        let mut config = Config::default();
        config.mount_options = options.mount_flags();
        if options.allow_other {
            config.acl = SessionACL::All;
        }
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = true;
        if state.transport.kind == TransportKind::IoUring {
            config.io_uring_depth = Some(IO_URING_DEPTH);
        }
        let mut session = Session::new(fs, &options.mountpoint, &config)?;
        if state.transport.kind == TransportKind::IoUring && session.io_uring().is_none() {
            // The kernel's settings said yes but FUSE_INIT did not offer it
            // (changed in between): say what is true, in the status too.
            state.transport = TransportStatus::dev_fuse(Some(
                "the kernel did not offer FUSE over io_uring at FUSE_INIT".into(),
            ));
            if options.io_uring == IoUringMode::Always {
                return Err(std::io::Error::other(
                    "--io-uring always: the kernel did not offer FUSE over io_uring at FUSE_INIT",
                ));
            }
            if let (Some(view), _) = state.rebuild(false, true) {
                orphans.swap(&slot, view);
            }
        }
        let notifier = session.notifier();
        if let Some(r) = &readahead {
            r.set_notifier(notifier.clone());
        }
        let unmounter = session.unmount_callable();
        let ended = Ended::default();
        let ended_in_session = ended.clone();
        let (events_tx, events) = mpsc::channel::<Event>();
        let stop = events_tx.clone();
        let session = std::thread::Builder::new()
            .name("exos-fuse".into())
            .spawn(move || {
                let r = session.run();
                ended_in_session.set();
                let _ = stop.send(Event::Stop);
                r
            })?;

        let (reports_tx, reports) = mpsc::channel();
        let live = LiveActivation::start(
            &options,
            state,
            (events_tx, events),
            Swapper {
                slot,
                orphans,
                notifier,
            },
            reports_tx,
            activity,
        );
        std::thread::Builder::new()
            .name("exos-activation".into())
            .spawn(move || live.run())?;

        Ok(Mount {
            pushed: readahead.as_ref().map(|r| r.stats.clone()),
            exec_read_bytes,
            mountpoint: options.mountpoint.clone(),
            unmounter,
            session: Some(session),
            initial,
            reports,
            ended,
        })
    }

    /// Bytes of reads answered from the exec cache.
    pub fn exec_read_bytes(&self) -> u64 {
        self.exec_read_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Files (and bytes) read-ahead stored into the kernel's page cache so
    /// far (see [`crate::readahead`]).
    pub fn pushed(&self) -> (u64, u64) {
        let c = self.push_counts();
        (c.files, c.bytes)
    }

    /// Every read-ahead counter (pushes, and why files were not pushed).
    pub fn push_counts(&self) -> crate::readahead::PushCounts {
        self.pushed
            .as_ref()
            .map_or_else(Default::default, |p| p.counts())
    }

    /// Becomes set when the session ends (unmounted from here or outside).
    pub fn ended(&self) -> Ended {
        self.ended.clone()
    }

    /// Unmounts (unless that already happened from outside) and waits for
    /// the FUSE threads to finish.
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        if !self.ended.wait(Duration::ZERO) {
            // umount(2) ourselves: fuser's unmounter decides whether the
            // mount is still there by polling the device, which can answer
            // wrongly and skip the unmount, leaving a join that never ends.
            // EBUSY can be passing: a process forked elsewhere holds a copy
            // of a descriptor on the mount until it execs. Retry briefly.
            let started = Instant::now();
            loop {
                match rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::empty())
                {
                    Ok(()) | Err(rustix::io::Errno::INVAL) => break,
                    // Not root: let fuser go through fusermount.
                    Err(rustix::io::Errno::PERM) => {
                        self.unmounter.unmount()?;
                        break;
                    }
                    Err(rustix::io::Errno::BUSY) if started.elapsed() < Duration::from_secs(3) => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !self.ended.wait(Duration::from_secs(10)) {
            return Err(std::io::Error::other(format!(
                "{}: unmounted, but the FUSE session did not end",
                self.mountpoint.display()
            )));
        }
        // The mount is gone (the session ended): fuser's own unmount would
        // only fail with EINVAL and log it as a warning.
        if let Some(s) = self.session.take() {
            let _ = s.join();
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The thread that keeps the view current: it watches the packages
/// directories and the state (inotify; polling where inotify fails),
/// rebuilds the view after a burst of changes settles, swaps it in and
/// tells the kernel what changed.
struct LiveActivation {
    state: State,
    /// Where packages go to have their content digests computed.
    digester: Option<mpsc::Sender<Vec<Arc<ActivePackage>>>>,
    prefetcher: Option<mpsc::Sender<Arc<exos_lazy::RemoteSource>>>,
    /// Lazy packages handed to the prefetcher (by record path).
    prefetched: std::collections::HashSet<PathBuf>,
    watched: Vec<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
    poll: Option<Duration>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
    swapper: Swapper,
    reports: mpsc::Sender<BuildReport>,
}

/// What replacing the served view touches: the slot the FUSE handlers read,
/// the inodes the kernel still holds, and the kernel's caches.
struct Swapper {
    slot: ViewSlot,
    orphans: OrphanKeeper,
    notifier: Notifier,
}

impl Swapper {
    fn swap(&self, view: View) {
        let old = self.orphans.swap(&self.slot, view);
        let new = self.slot.get();
        invalidate(&self.notifier, &old, &new);
    }
}

impl LiveActivation {
    fn start(
        options: &MountOptions,
        state: State,
        (events_tx, events): (mpsc::Sender<Event>, mpsc::Receiver<Event>),
        swapper: Swapper,
        reports: mpsc::Sender<BuildReport>,
        activity: crate::fs::Activity,
    ) -> Self {
        let poll = match options.watch {
            WatchMode::Poll(d) => Some(d),
            WatchMode::Inotify => None,
        };
        // Digests serve sharing and the exec cache (its entries' names).
        let digester = (options.share_identical || options.exec_cache.is_some())
            .then(|| {
                // The exec cache names its entries by digest: it needs them
                // before the first programs start, not after.
                let wait_for_quiet = options.exec_cache.is_none().then_some(activity);
                start_digester(options.root.clone(), events_tx.clone(), wait_for_quiet)
            })
            .flatten();
        let prefetcher = options.prefetch.then(start_prefetcher).flatten();
        let watched = watched_dirs(&options.root)
            .into_iter()
            .chain(state.activation.overlays.iter().flat_map(|o| o.dirs()))
            .collect();
        let mut live = LiveActivation {
            state,
            digester,
            prefetcher,
            prefetched: Default::default(),
            watched,
            watcher: None,
            poll,
            events,
            events_tx,
            swapper,
            reports,
        };
        if live.poll.is_none() {
            match start_watcher(&live.watched, live.events_tx.clone()) {
                Ok(w) => live.watcher = Some(w),
                Err(reason) => {
                    live.fall_back_to_polling(reason);
                    // Record the fallback in status.json at once.
                    let _ = live.events_tx.send(Event::Rescan);
                }
            }
        }
        live.queue_digests();
        live.queue_prefetch();
        live
    }

    /// Runs until the session ends.
    fn run(mut self) {
        while let Some(event) = self.next_event() {
            let mut digests = false;
            let mut failure = match event {
                Event::Failed(reason) => Some(reason),
                Event::Rescan => None,
                Event::Digests => {
                    digests = true;
                    None
                }
                Event::Stop => return,
            };
            // Let a burst of changes (a copy, a rename) settle.
            while let Ok(e) = self.events.recv_timeout(Duration::from_millis(100)) {
                match e {
                    Event::Failed(reason) => failure = Some(reason),
                    Event::Rescan => {}
                    Event::Digests => digests = true,
                    Event::Stop => return,
                }
            }
            let force = match failure {
                Some(reason) if self.poll.is_none() => {
                    self.fall_back_to_polling(reason);
                    true
                }
                _ => digests,
            };
            self.rebuild(force);
        }
    }

    /// Hands lazy packages not handed yet to the prefetcher.
    fn queue_prefetch(&mut self) {
        let Some(tx) = &self.prefetcher else { return };
        for p in self.state.activation.all() {
            if let Some(remote) = &p.remote {
                if self.prefetched.insert(p.path.clone()) {
                    let _ = tx.send(remote.clone());
                }
            }
        }
    }

    /// Hands the active packages whose digests are unknown to the digester.
    fn queue_digests(&self) {
        let Some(tx) = &self.digester else { return };
        let todo: Vec<Arc<ActivePackage>> = self
            .state
            .activation
            .all()
            .filter(|p| {
                // Digesting reads every byte: a lazy package would be
                // fetched whole for it.
                p.digests.get().is_none()
                    && p.remote.is_none()
                    && !p
                        .digest_queued
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
            })
            .cloned()
            .collect();
        if !todo.is_empty() {
            let _ = tx.send(todo);
        }
    }

    fn next_event(&self) -> Option<Event> {
        match self.poll {
            Some(interval) => match self.events.recv_timeout(interval) {
                Ok(e) => Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => Some(Event::Rescan),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
            None => self.events.recv().ok(),
        }
    }

    fn fall_back_to_polling(&mut self, reason: String) {
        tracing::warn!(
            "live activation: inotify failed ({reason}); polling every {} s",
            FALLBACK_POLL.as_secs()
        );
        self.watcher = None;
        self.poll = Some(FALLBACK_POLL);
        self.state.live = polling_status(FALLBACK_POLL, Some(reason));
    }

    fn rebuild(&mut self, force: bool) {
        let (view, report) = self.state.rebuild(false, force);
        // A packages directory (or a user's) may have been created or
        // replaced: watch what exists now (the old watch died with it).
        self.watched = watched_dirs(&self.state.options.root);
        // Overlay directories: a file added, changed or removed there is
        // shown at once.
        self.watched
            .extend(self.state.activation.overlays.iter().flat_map(|o| o.dirs()));
        if let Some(w) = self.watcher.as_mut() {
            if let Err(reason) = rewatch(w, &self.watched) {
                let _ = self.events_tx.send(Event::Failed(reason));
            }
        }
        let Some(view) = view else { return };
        self.swapper.swap(view);
        self.queue_digests();
        self.queue_prefetch();
        tracing::info!(
            generation = report.generation,
            active = report.active,
            refused = report.refused.len(),
            seconds = report.seconds,
            "view rebuilt"
        );
        for (path, reason) in &report.refused {
            tracing::warn!("refused {}: {reason}", path.display());
        }
        let _ = self.reports.send(report);
    }
}

/// The prefetcher (`--prefetch`): two threads completing lazy packages in
/// the block cache, one package at a time each, in activation order.
fn start_prefetcher() -> Option<mpsc::Sender<Arc<exos_lazy::RemoteSource>>> {
    let (tx, rx) = mpsc::channel::<Arc<exos_lazy::RemoteSource>>();
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..2 {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("exos-prefetch-{n}"))
            .spawn(move || loop {
                let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(source) = next else { return };
                if let Err(e) = source.fetch_all(&|_| {}) {
                    tracing::warn!("prefetching {}: {e}", source.url());
                }
            })
            .ok()?;
    }
    Some(tx)
}

/// The digester: a background thread that gives each package its content
/// digests — remembered in `system/state/digests/<sha>.digests` when the
/// state names the package's SHA-256 (written when the mount may write
/// there), else computed by reading the package whole once — and then asks
/// for a rebuild, in which identical files of different packages get one
/// inode. The digests are the mount's own: a package cannot claim another's
/// content.
fn start_digester(
    root: PathBuf,
    events: mpsc::Sender<Event>,
    wait_for_quiet: Option<crate::fs::Activity>,
) -> Option<mpsc::Sender<Vec<Arc<ActivePackage>>>> {
    let (tx, rx) = mpsc::channel::<Vec<Arc<ActivePackage>>>();
    let layout = exos_root::Layout::new(root);
    std::thread::Builder::new()
        .name("exos-digests".into())
        .spawn(move || {
            // Background work: it decompresses whole packages, and must not
            // take the cores from the readers it is meant to help (nice 19
            // for this thread alone; Linux applies it per thread).
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            while let Ok(mut batch) = rx.recv() {
                // Not while the mount is busy reading (a cold start, a
                // build): half a second without a read, or half a minute.
                if let Some(activity) = &wait_for_quiet {
                    activity.wait_until_quiet(Duration::from_millis(500), Duration::from_secs(30));
                }
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                for p in batch {
                    if let Some(d) = digests_of(&layout, &p) {
                        let _ = p.digests.set(Arc::new(d));
                    }
                }
                if events.send(Event::Digests).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(tx)
}

fn digests_of(layout: &exos_root::Layout, p: &ActivePackage) -> Option<ContentDigests> {
    let remembered = p.sha256.map(|sha| layout.digests(&sha));
    if let Some(path) = &remembered {
        if let Ok(bytes) = std::fs::read(path) {
            match ContentDigests::parse(&bytes, path) {
                Ok(d) => return Some(d),
                Err(e) => tracing::warn!("{e}; computing them again"),
            }
        }
    }
    let digests = match p.package.content_digests() {
        Ok(d) => ContentDigests(d),
        Err(e) => {
            tracing::warn!("{}: no content digests: {e}", p.path.display());
            return None;
        }
    };
    if let Some(path) = remembered {
        let written = std::fs::create_dir_all(layout.digests_dir())
            .and_then(|()| exos_root::write_atomically(&path, &digests.render()));
        if let Err(e) = written {
            tracing::debug!("{}: not remembered: {e}", path.display());
        }
    }
    Some(digests)
}

/// A flag raised when a mount's session has ended.
#[derive(Clone, Default)]
pub struct Ended(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Ended {
    fn set(&self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0 .1.notify_all();
    }

    /// Waits up to `timeout`; true once the session has ended.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .0
             .1
            .wait_timeout_while(guard, timeout, |ended| !*ended)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Tells the kernel which cached names changed between two views, so the
/// new view is visible at once rather than after the TTL.
fn invalidate(notifier: &Notifier, old: &View, new: &View) {
    if old.owners != new.owners || old.setuid != new.setuid {
        // Owners or served permission bits changed: every cached attribute
        // may be wrong, whatever its inode number.
        let mut stack = vec![0u32];
        while let Some(n) = stack.pop() {
            let _ = notifier.inval_inode(fuser::INodeNo(new.node(n).ino), -1, 0);
            stack.extend_from_slice(new.children(n));
        }
    }
    let mut stack = vec![0u32];
    while let Some(dir) = stack.pop() {
        let ino = old.node(dir).ino;
        let new_dir = new.lookup_ino(ino);
        for &child in old.children(dir) {
            let name = old.name(child);
            let still = new_dir.and_then(|d| new.lookup(d, name));
            let same = still.is_some_and(|c| new.node(c).ino == old.node(child).ino);
            if !same {
                let _ = notifier.inval_entry(fuser::INodeNo(ino), std::ffi::OsStr::new(name));
            } else if old.kind(child) == crate::view::Kind::Dir {
                stack.push(child);
            }
        }
        if let Some(d) = new_dir {
            // Names new in this directory: the kernel may hold a negative
            // entry for them.
            for &child in new.children(d) {
                let name = new.name(child);
                if old.lookup(dir, name).is_none() {
                    let _ = notifier.inval_entry(fuser::INodeNo(ino), std::ffi::OsStr::new(name));
                }
            }
            // The kernel caches listings (no opendir): drop this one if any
            // child was added, removed or replaced.
            let listing = |v: &View, d: u32| -> Vec<(u64, String)> {
                v.children(d)
                    .iter()
                    .map(|&c| (v.node(c).ino, v.name(c).to_string()))
                    .collect()
            };
            if listing(new, d) != listing(old, dir) {
                let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
            }
        }
    }
}

/// Is `path` currently a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    exos_root::mountinfo::is_mounted(path)
}
