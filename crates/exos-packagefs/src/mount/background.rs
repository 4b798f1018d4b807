//! Background work of a mount: content digests of active packages (for
//! sharing identical files and naming exec cache entries) and, with
//! `--prefetch`, fetching lazily installed packages whole.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::activate::ActivePackage;
use exos_root::digests::ContentDigests;

use super::*;

/// The prefetcher (`--prefetch`): two threads completing lazy packages in
/// the block cache, one package at a time each, in activation order.
pub(super) fn start_prefetcher() -> Option<mpsc::Sender<Arc<exos_lazy::RemoteSource>>> {
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
pub(super) fn start_digester(
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

pub(super) fn digests_of(layout: &exos_root::Layout, p: &ActivePackage) -> Option<ContentDigests> {
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
