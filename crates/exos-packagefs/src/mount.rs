//! Mounting: scan, build the view, serve it over FUSE on several threads,
//! and rebuild it live when package files come and go.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exos_manifest::Provide;
use fuser::{Config, MountOption, Notifier, Session, SessionACL, SessionUnmounter};
use notify::{RecursiveMode, Watcher};
use serde_json::json;

use crate::activate::{Activation, Scanner, LAYERS};
use crate::cache::ChunkCache;
use crate::fs::PackageFs;
use crate::view::View;

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
        }
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
}

struct State {
    scanner: Scanner,
    activation: Activation,
    generation: u64,
    epoch: SystemTime,
    options: MountOptions,
}

impl State {
    fn status_json(&self, activation: &Activation, view: &View) -> Vec<u8> {
        let conflicts = &view.conflicts;
        let layers: serde_json::Map<String, serde_json::Value> = LAYERS
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let pkgs: Vec<_> = activation.layers[i]
                    .iter()
                    .map(|p| {
                        json!({
                            "file": p.file_name,
                            "name": p.manifest.name,
                            "version": p.manifest.version.to_string(),
                            "sha256": p.sha256,
                        })
                    })
                    .collect();
                (l.to_string(), serde_json::Value::Array(pkgs))
            })
            .collect();
        let v = json!({
            "root": self.options.root,
            "state_list": self.options.state_list,
            "mountpoint": self.options.mountpoint,
            "pid": std::process::id(),
            "generation": self.generation,
            "updated": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "layers": layers,
            "refused": activation.refused.iter().map(|r| json!({
                "layer": LAYERS[r.layer], "file": r.path, "reason": r.reason,
            })).collect::<Vec<_>>(),
            "conflicts": conflicts.iter().map(|c| json!({
                "layer": c.layer, "path": c.path, "winner": c.winner, "loser": c.loser,
            })).collect::<Vec<_>>(),
            "cache_bytes": self.options.cache_bytes,
            "nodes": view.node_count(),
            "index_bytes": view.memory_usage(),
        });
        let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Rescans and builds a new view (not yet swapped in).
    fn rebuild(&mut self, first: bool) -> (View, BuildReport) {
        let t = Instant::now();
        let activation = self
            .scanner
            .scan(if first { None } else { Some(&self.activation) });
        self.generation += 1;
        let mut view = View::build(&activation, self.epoch);
        let status = self.status_json(&activation, &view);
        view.set_status(status);
        let report = BuildReport {
            generation: self.generation,
            active: activation.all().count(),
            refused: activation
                .refused
                .iter()
                .map(|r| (r.path.clone(), r.reason.clone()))
                .collect(),
            conflicts: view.conflicts.len(),
            nodes: view.node_count(),
            view_bytes: view.memory_usage(),
            seconds: t.elapsed().as_secs_f64(),
        };
        // Packages that left: their cached chunks are useless now.
        for old in self.activation.all() {
            if !activation.all().any(|p| p.id == old.id) {
                self.scanner.cache.forget_owner(old.id);
            }
        }
        self.activation = activation;
        (view, report)
    }
}

fn scanner(options: &MountOptions, cache: Arc<ChunkCache>) -> Scanner {
    let mut s = Scanner::new(options.root.clone(), options.host_apis.clone(), cache);
    s.state_list = options.state_list.clone();
    s
}

/// Builds the view of `root` once, without mounting (for tests, `--check`
/// and benchmarks of view construction).
pub fn build_view(options: &MountOptions) -> (View, BuildReport) {
    let cache = Arc::new(ChunkCache::new(options.cache_bytes));
    let mut state = State {
        scanner: scanner(options, cache),
        activation: Activation::default(),
        generation: 0,
        epoch: SystemTime::now(),
        options: options.clone(),
    };
    state.rebuild(true)
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
    _watcher: notify::RecommendedWatcher,
}

impl Mount {
    /// Mounts and starts serving. Returns once the mount is visible.
    pub fn start(options: MountOptions) -> std::io::Result<Mount> {
        let cache = Arc::new(ChunkCache::new(options.cache_bytes));
        let mut state = State {
            scanner: scanner(&options, cache),
            activation: Activation::default(),
            generation: 0,
            epoch: SystemTime::now(),
            options: options.clone(),
        };
        let (view, initial) = state.rebuild(true);
        let fs = PackageFs::new(view, options.ttl).with_prefetch();
        let slot = fs.slot();
        let orphans = fs.orphan_keeper();

        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("exos:{}", options.root.display())),
            MountOption::Subtype("exos".into()),
            MountOption::RO,
            MountOption::Exec,
            MountOption::Suid,
            MountOption::Dev,
            MountOption::DefaultPermissions,
        ];
        if options.allow_other {
            config.acl = SessionACL::All;
        }
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = true;
        let mut session = Session::new(fs, &options.mountpoint, &config)?;
        let notifier = session.notifier();
        let unmounter = session.unmount_callable();
        let ended = Ended::default();
        let ended_in_session = ended.clone();
        let session = std::thread::Builder::new()
            .name("exos-fuse".into())
            .spawn(move || {
                let r = session.run();
                ended_in_session.set();
                r
            })?;

        // Live activation: watch the packages directories and the state.
        let (events_tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e {
                if !e.kind.is_access() {
                    let _ = events_tx.send(());
                }
            }
        })
        .map_err(std::io::Error::other)?;
        for layer in 0..LAYERS.len() {
            let dir = state.scanner.packages_dir(layer);
            if dir.is_dir() {
                watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(std::io::Error::other)?;
            }
        }
        let state_dir = options.root.join("system/state");
        if state_dir.is_dir() {
            watcher
                .watch(&state_dir, RecursiveMode::NonRecursive)
                .map_err(std::io::Error::other)?;
        }
        let (reports_tx, reports) = mpsc::channel();
        let state = Mutex::new(state);
        std::thread::Builder::new()
            .name("exos-activation".into())
            .spawn(move || {
                while events.recv().is_ok() {
                    // Let a burst of changes (a copy, a rename) settle.
                    while events.recv_timeout(Duration::from_millis(100)).is_ok() {}
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    let (view, report) = st.rebuild(false);
                    let old = slot.swap(view);
                    let new = slot.get();
                    orphans.adopt(&old, &new);
                    invalidate(&notifier, &old, &new);
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
                    let _ = reports_tx.send(report);
                }
            })?;

        Ok(Mount {
            mountpoint: options.mountpoint.clone(),
            unmounter,
            session: Some(session),
            initial,
            reports,
            ended,
            _watcher: watcher,
        })
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
            match rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                // Not root: let fuser go through fusermount.
                Err(rustix::io::Errno::PERM) => self.unmounter.unmount()?,
                Err(e) => return Err(e.into()),
            }
        }
        if !self.ended.wait(Duration::from_secs(10)) {
            return Err(std::io::Error::other(format!(
                "{}: unmounted, but the FUSE session did not end",
                self.mountpoint.display()
            )));
        }
        let _ = self.unmounter.unmount();
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
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.replace("\\040", " ") == want)
}
