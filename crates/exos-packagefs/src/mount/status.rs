//! What a mount reports: `.exos/status.json` ([`Status`], what `exos status`
//! shows) and the report of each build ([`BuildReport`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use exos_root::{Layer, PerLayer, Sha256};

use crate::activate::{ActivePackage, Owner};

use super::*;

/// A summary of one (re)build, for logs and `exos mount` output.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Counts builds; the first is 1.
    pub generation: u64,
    /// Packages active.
    pub active: usize,
    /// Package files refused, and why.
    pub refused: Vec<(PathBuf, crate::refusal::RefusalReason)>,
    /// Files hidden by another in the same layer.
    pub conflicts: usize,
    /// Nodes in the view.
    pub nodes: usize,
    /// Bytes the view takes.
    pub view_bytes: usize,
    /// How long the build took.
    pub seconds: f64,
    /// False when the rescan found nothing changed (no new view).
    pub changed: bool,
}

/// `.exos/status.json`: what `exos status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The EXOS root.
    pub root: PathBuf,
    /// The state list mounted instead of the current state, if one.
    pub state_list: Option<PathBuf>,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The serving process.
    pub pid: u32,
    /// Counts builds; the first is 1.
    pub generation: u64,
    /// Seconds since the epoch of the last rebuild.
    pub updated: u64,
    /// Active packages per layer.
    pub layers: PerLayer<Vec<ActiveStatus>>,
    /// Package files refused, and why.
    pub refused: Vec<RefusedStatus>,
    /// Files hidden by another in the same layer.
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
    /// Mount flags and what is trusted.
    pub security: SecurityStatus,
    /// What the active packages cost.
    pub memory: MemoryStatus,
    /// How changes are noticed.
    pub live: LiveStatus,
    /// Missing from mounts started by older versions: read as `dev_fuse`.
    #[serde(default)]
    pub transport: TransportStatus,
    /// The exec cache, when the mount has one.
    #[serde(default)]
    pub exec_cache: Option<ExecCacheStatus>,
    /// Size of the decompressed-chunk cache.
    pub cache_bytes: u64,
    /// Nodes in the view.
    pub nodes: usize,
    /// Bytes the view's index takes.
    pub index_bytes: usize,
}

/// Where a mount keeps decompressed programs, and how it serves them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecCacheStatus {
    /// The cache directory.
    pub dir: PathBuf,
    /// Its size limit.
    pub max_bytes: u64,
    /// How its programs are served.
    pub serve: crate::exec_cache::ExecCacheServe,
}

/// A runtime overlay in effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayStatus {
    /// The package it covers.
    pub package: String,
    /// The package's layer.
    pub layer: Layer,
    /// The overlay directory.
    pub dir: PathBuf,
    /// Files, directories and symlinks in it.
    pub entries: usize,
    /// Added with --force to a layer that requires signed content.
    pub forced: bool,
}

/// An active package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveStatus {
    /// Its file name.
    pub file: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its SHA-256, when verified against the state.
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

/// How much of a lazy package is cached.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LazyBlocks {
    /// Blocks in the package.
    pub blocks: u64,
    /// Of them, cached.
    pub cached: u64,
    /// Bytes of the package.
    pub bytes: u64,
}

/// Identical files served as one inode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SharingStatus {
    /// Whether the mount shares them.
    pub enabled: bool,
    /// Active packages whose content digests are known.
    pub packages_digested: usize,
    /// Active packages.
    pub packages: usize,
}

/// A per-user layer (`ROOT/users/NAME/packages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserLayerStatus {
    /// The user.
    pub user: exos_root::UserName,
    /// Who its files belong to: the owner of its packages directory.
    pub owner: Owner,
    /// Its active packages.
    pub packages: Vec<ActiveStatus>,
}

/// A package file not activated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedStatus {
    /// The layer it was found in.
    pub layer: Layer,
    /// Its file.
    pub file: PathBuf,
    /// Why, in words.
    pub reason: String,
}

/// A file hidden by another in the same layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictStatus {
    /// The layer.
    pub layer: Layer,
    /// Path inside the layer.
    pub path: String,
    /// The package whose file is shown.
    pub winner: String,
    /// The package whose file is hidden.
    pub loser: String,
}

/// Mount flags and keys.
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

/// How the kernel's requests reach the daemon, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportStatus {
    /// io_uring or `/dev/fuse`.
    pub kind: TransportKind,
    /// io_uring: queues (one per possible CPU) and entries per queue.
    pub queues: Option<usize>,
    /// io_uring: entries per queue.
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
    pub(super) fn dev_fuse(reason: Option<String>) -> TransportStatus {
        TransportStatus {
            kind: TransportKind::DevFuse,
            queues: None,
            depth: None,
            reason,
        }
    }

    /// What a mount with `mode` will use, as far as the kernel's settings
    /// tell before mounting (the session confirms it at FUSE_INIT).
    pub(super) fn expected(mode: IoUringMode) -> TransportStatus {
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

/// Memory the mount's packages cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// What the active packages cost (index, metadata, view).
    pub used_bytes: u64,
    /// What they may cost (`--max-memory-mib`).
    pub budget_bytes: u64,
}

/// How changes to the root are noticed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveStatus {
    /// `inotify` or `polling`.
    pub mode: String,
    /// Polling: how often.
    pub interval_ms: Option<u64>,
    /// Why polling is used, when inotify failed.
    pub reason: Option<String>,
}

pub(super) fn active_status(p: &Arc<ActivePackage>) -> ActiveStatus {
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

pub(super) fn polling_status(interval: Duration, reason: Option<String>) -> LiveStatus {
    LiveStatus {
        mode: "polling".into(),
        interval_ms: Some(interval.as_millis() as u64),
        reason,
    }
}
