//! How to mount: [`MountOptions`], and whether FUSE over io_uring can be used.

use std::path::PathBuf;
use std::time::Duration;

use exos_manifest::Provide;
use fuser::MountOption;

use crate::activate::DEFAULT_MEMORY_BUDGET;
use crate::fs::XattrPolicy;
use crate::view::Privileges;

/// How changes to the packages directories are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify; falls back to polling if the kernel refuses a watch.
    Inotify,
    /// Rescan at this interval (for file systems without inotify, e.g. NFS).
    Poll(Duration),
}

/// Polling interval after inotify failed.
pub(super) const FALLBACK_POLL: Duration = Duration::from_secs(2);

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

pub(super) const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

pub(super) const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

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
    /// The EXOS root.
    pub root: PathBuf,
    /// Where to mount it.
    pub mountpoint: PathBuf,
    /// Decompressed-chunk cache, in bytes, shared by all packages.
    pub cache_bytes: u64,
    /// FUSE worker threads.
    pub threads: usize,
    /// How long the kernel may cache names and attributes.
    pub ttl: Duration,
    /// APIs the host provides (for `uses`).
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
    /// How changes to the root are noticed.
    pub watch: WatchMode,
    /// How extended attributes are answered.
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
    /// Whether to use FUSE over io_uring.
    pub io_uring: IoUringMode,
    /// Keys for sealed packages, and the layers they serve.
    pub keys: crate::activate::MountKeys,
}

impl MountOptions {
    /// The defaults for mounting `root` at `mountpoint`.
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
