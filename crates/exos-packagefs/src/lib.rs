//! # exos-packagefs — packages mounted, never extracted
//!
//! Haiku's packagefs for Linux, over FUSE: every active package of an EXOS
//! root (`ROOT/{system,common,user}/packages/*.hpkg`) is overlaid into one
//! read-only namespace, per layer and merged (user over common over
//! system). File data is decompressed on demand, one 64 KiB chunk at a time,
//! through a bounded cache shared by all packages; the kernel's page cache
//! keeps what it read, because a given inode number always means the same
//! bytes.
//!
//! * [`activate`] — which package files are active: validation (header,
//!   structure, manifest, SHA-256 against the state), `uses` checks,
//!   reasons for refusals. The only policy here is what the issue of
//!   mounting needs; install/remove decisions belong to the package manager.
//! * [`view`] — the immutable in-memory namespace built from an activation.
//! * [`fs`] — the FUSE request handlers over the current view.
//! * [`mount`] — mounting, multi-threaded serving, live re-activation when
//!   package files are added or removed.
//! * [`cache`] — the shared, byte-bounded chunk cache.

#![forbid(unsafe_code)]

pub mod activate;
pub mod cache;
pub mod exec_cache;
pub mod fs;
pub mod known;
pub mod mount;
pub mod readahead;
pub mod refusal;
pub mod view;

pub use mount::{
    build_view, io_uring_available, is_mounted, BuildReport, Ended, IoUringMode, Mount,
    MountOptions, Status, TransportKind, TransportStatus, WatchMode,
};
pub use view::Privileges;
