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
    pub generation: u64,
    pub active: usize,
    pub refused: Vec<(PathBuf, crate::refusal::RefusalReason)>,
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
