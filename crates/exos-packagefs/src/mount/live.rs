//! Live re-activation: the thread that watches the packages directories
//! and the state (inotify; polling where inotify fails), rebuilds the view
//! after a burst of changes settles, swaps it in and tells the kernel what
//! changed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use fuser::Notifier;
use notify::{RecursiveMode, Watcher};

use exos_root::Layer;

use crate::activate::ActivePackage;
use crate::fs::{OrphanKeeper, ViewSlot};
use crate::view::View;

use super::*;

/// What the watcher tells the activation thread.
pub(super) enum Event {
    /// Something changed: rescan.
    Rescan,
    /// inotify stopped working (e.g. the watch limit): switch to polling.
    Failed(String),
    /// The FUSE session ended: the activation thread exits.
    Stop,
    /// The digester has new content digests: rebuild (inode numbers change).
    Digests,
}

/// The packages directories (the per-user layers' too), the state
/// directory, and their parents (so a packages directory created or
/// replaced later is noticed).
pub(super) fn watched_dirs(root: &Path) -> Vec<PathBuf> {
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

pub(super) fn start_watcher(
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
pub(super) fn rewatch(w: &mut notify::RecommendedWatcher, dirs: &[PathBuf]) -> Result<(), String> {
    for d in dirs.iter().filter(|d| d.is_dir()) {
        let _ = w.unwatch(d);
        w.watch(d, RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(())
}

/// The thread that keeps the view current: it watches the packages
/// directories and the state (inotify; polling where inotify fails),
/// rebuilds the view after a burst of changes settles, swaps it in and
/// tells the kernel what changed.
pub(super) struct LiveActivation {
    pub(super) state: State,
    /// Where packages go to have their content digests computed.
    pub(super) digester: Option<mpsc::Sender<Vec<Arc<ActivePackage>>>>,
    pub(super) prefetcher: Option<mpsc::Sender<Arc<exos_lazy::RemoteSource>>>,
    /// Lazy packages handed to the prefetcher (by record path).
    pub(super) prefetched: std::collections::HashSet<PathBuf>,
    pub(super) watched: Vec<PathBuf>,
    pub(super) watcher: Option<notify::RecommendedWatcher>,
    pub(super) poll: Option<Duration>,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) events_tx: mpsc::Sender<Event>,
    pub(super) swapper: Swapper,
    pub(super) reports: mpsc::Sender<BuildReport>,
}

/// What replacing the served view touches: the slot the FUSE handlers read,
/// the inodes the kernel still holds, and the kernel's caches.
pub(super) struct Swapper {
    pub(super) slot: ViewSlot,
    pub(super) orphans: OrphanKeeper,
    pub(super) notifier: Notifier,
}

impl Swapper {
    fn swap(&self, view: View) {
        let old = self.orphans.swap(&self.slot, view);
        let new = self.slot.get();
        invalidate(&self.notifier, &old, &new);
    }
}

impl LiveActivation {
    pub(super) fn start(
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
    pub(super) fn run(mut self) {
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

/// Tells the kernel which cached names changed between two views, so the
/// new view is visible at once rather than after the TTL.
pub(super) fn invalidate(notifier: &Notifier, old: &View, new: &View) {
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
                let _ = notifier.inval_entry(fuser::INodeNo(ino), OsStr::from_bytes(name));
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
                    let _ = notifier.inval_entry(fuser::INodeNo(ino), OsStr::from_bytes(name));
                }
            }
            // The kernel caches listings (no opendir): drop this one if any
            // child was added, removed or replaced.
            let listing = |v: &View, d: u32| -> Vec<(u64, Vec<u8>)> {
                v.children(d)
                    .iter()
                    .map(|&c| (v.node(c).ino, v.name(c).to_vec()))
                    .collect()
            };
            if listing(new, d) != listing(old, dir) {
                let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
            }
        }
    }
}
