//! Mounting: scan, build the view, serve it over FUSE on several threads,
//! and rebuild it live when package files come and go.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{Config, Session, SessionACL, SessionUnmounter};

use exos_root::{Layer, PerLayer};

use crate::activate::{Activation, Scanner};
use crate::cache::ChunkCache;
use crate::fs::PackageFs;
use crate::view::{View, ViewSettings};

mod background;
mod live;
mod options;
mod status;

use background::*;
use live::*;
pub use options::*;
pub use status::*;

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
                    reason: r.reason.to_string(),
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
        let kept: HashSet<u64> = activation.all().map(|p| p.id).collect();
        for old in self.activation.all() {
            if !kept.contains(&old.id) {
                self.scanner.cache.forget_owner(old.id);
            }
        }
        self.activation = activation;
        (Some(view), report)
    }
}

/// Whether two scans activated the same package objects with the same
/// refusals and owners (then the view would be identical).
fn same_activation(a: &Activation, b: &Activation) -> bool {
    let ids = |x: &Activation| x.all().map(|p| p.id).collect::<Vec<_>>();
    let refused = |x: &Activation| {
        x.refused
            .iter()
            .map(|r| (r.layer, r.path.clone(), r.reason.to_string()))
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
    /// The report of the first build.
    pub initial: BuildReport,
    /// Receives a report after every live rebuild.
    pub reports: mpsc::Receiver<BuildReport>,
    ended: Ended,
    pushed: Option<Arc<crate::readahead::PushStats>>,
    exec_read_bytes: Arc<std::sync::atomic::AtomicU64>,
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

/// Is `path` currently a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    exos_root::mountinfo::is_mounted(path)
}
