//! Activation: which package files of an EXOS root become part of the view.
//!
//! Every `*.hpkg` under `ROOT/<layer>/packages` is opened and validated
//! (header, TOC and attribute structure, manifest; the SHA-256 when the
//! root's `system/state/active.list` records one). A package whose `uses`
//! names a system API that no other active package (nor the host) provides
//! is refused. Refused packages are reported with their reason; everything
//! else is activated. Packages unchanged since the previous scan (same
//! device, inode, size and mtime) are reused, not reopened.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use exos_hpkg::crypt::KeyRing;
use exos_hpkg::{OpenOptions, Package};
use exos_manifest::{Dependency, Manifest, Provide};
use exos_root::walk::{open_beneath, WalkedDir, Writers};

use exos_root::digests::ContentDigests;
use exos_root::UserName;
use exos_root::{Layer, Layout, PerLayer, Sha256, StateEntry, StateList};
use exos_trust::{FileDigest, TrustStore};
use std::sync::OnceLock;

use crate::cache::ChunkCache;
pub use crate::refusal::RefusalReason;

/// A package file's identity on disk: a replaced file is a new package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    /// The identity of a file by its metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }

    /// The identity of an opened file (fstat of its descriptor).
    pub fn of_stat(st: &rustix::fs::Stat) -> FileIdentity {
        FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        }
    }
}

/// The package keys a mount was given, and the shared layers they serve
/// (`system` and `common` unless told otherwise). A key never decrypts a
/// package of a per-user layer, nor of a layer that anyone but root (and
/// the mount's own user) can add files to: whoever could place a sealed
/// file there — a copy of a system package, whose ciphertext anyone may
/// read — would read through the mount what the key protects.
#[derive(Debug, Clone)]
pub struct MountKeys {
    /// The keys.
    pub ring: KeyRing,
    /// Per layer, whether the keys decrypt its packages.
    pub layers: PerLayer<bool>,
}

impl Default for MountKeys {
    fn default() -> MountKeys {
        MountKeys {
            ring: KeyRing::default(),
            layers: PerLayer {
                system: true,
                common: true,
                user: false,
            },
        }
    }
}

impl MountKeys {
    /// The keys an open of a package in `layer`, found in a directory
    /// `writers` can change, may use: the ring, or none.
    fn for_layer(&self, layer: Layer, writers: Writers) -> KeyRing {
        let me = rustix::process::geteuid().as_raw();
        if *self.layers.get(layer) && writers.only(me) {
            self.ring.clone()
        } else {
            KeyRing::default()
        }
    }

    /// Why a sealed package whose key the mount holds was not opened with it.
    fn withheld(
        &self,
        layer: Option<Layer>,
        writers: Writers,
        err: &RefusalReason,
    ) -> Option<RefusalReason> {
        let RefusalReason::Package(err) = err else {
            return None;
        };
        let exos_hpkg::ErrorKind::Encrypted(id) = err.kind() else {
            return None;
        };
        if !self.ring.iter().any(|k| k.id().to_string() == *id) {
            return None;
        }
        let served: Vec<&str> = Layer::ALL
            .into_iter()
            .filter(|l| *self.layers.get(*l))
            .map(Layer::name)
            .collect();
        let served = if served.is_empty() {
            "no layer".to_string()
        } else {
            format!("the {} layers only", served.join(" and "))
        };
        Some(RefusalReason::KeyWithheld(match layer {
            None => format!(
                "sealed with key {id}, which this mount was given for {served}: a key never decrypts a package of a user's own layer (whoever can place a file there would read what the key protects)"
            ),
            Some(l) if !*self.layers.get(l) => format!(
                "sealed with key {id}, which this mount was given for {served} (exos mount --key-layers)"
            ),
            Some(l) => format!(
                "sealed with key {id}, but the {l} packages directory can be changed by {}: a key decrypts only packages of a directory root alone controls",
                match writers {
                    Writers::RootAnd(uid) => format!("uid {uid}"),
                    _ => "other users".to_string(),
                }
            ),
        }))
    }
}

pub use exos_root::RESERVED_NAMES;

/// Estimated bytes of view (nodes, child lists, inode index) per package
/// entry, counted in both the layer and the merged tree.
pub const VIEW_BYTES_PER_ENTRY: u64 = 2 * 80;

/// Who owns a layer's files in the view: the owner of its packages
/// directory (whoever can write that directory controls its contents).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// An activated package.
pub struct ActivePackage {
    /// Unique for the life of the mount; part of its files' inode numbers.
    pub id: u64,
    /// The layer it is active in.
    pub layer: Layer,
    /// Where its file was found.
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// The file's identity when opened.
    pub identity: FileIdentity,
    /// The opened package.
    pub package: Package,
    /// Its manifest.
    pub manifest: Manifest,
    /// SHA-256 of the file, when it was verified against the state.
    pub sha256: Option<Sha256>,
    /// The trusted key whose signature admitted it, in a layer whose
    /// policy requires one.
    pub signed_by: Option<String>,
    /// Heap chunk the last read of this package ended in (read-ahead).
    pub last_chunk_read: AtomicU64,
    /// Memory this package costs the mount (index, metadata, its share of
    /// the view), charged against the mount's budget.
    pub memory: u64,
    /// For a package of a per-user layer (`ROOT/users/NAME/packages`): the
    /// user, and the owner of that directory (who its files belong to).
    pub user: Option<(UserName, Owner)>,
    /// Its files' content digests, once the mount's digester computed (or
    /// loaded) them: identical files of different packages then share an
    /// inode. Never taken from the package itself.
    pub digests: OnceLock<Arc<ContentDigests>>,
    /// Whether it was handed to the digester already.
    pub digest_queued: std::sync::atomic::AtomicBool,
    /// For a lazily installed package: where its blocks come from.
    pub remote: Option<Arc<exos_lazy::RemoteSource>>,
}

/// Refuses a package that ships a name packagefs generates at the top of
/// every layer (it could replace or hide other packages' metadata).
pub fn check_reserved_names(package: &Package) -> Result<(), RefusalReason> {
    match exos_root::reserved_name(package.toc().root().children().map(|c| c.name_bytes())) {
        Some(name) => Err(RefusalReason::ReservedName {
            name: name.to_string(),
        }),
        None => Ok(()),
    }
}

impl ActivePackage {
    /// Validates an opened package for activation: no reserved top-level
    /// names, a valid manifest; computes what it costs the mount.
    pub fn new(
        id: u64,
        layer: Layer,
        path: PathBuf,
        file_name: String,
        identity: FileIdentity,
        package: Package,
    ) -> Result<ActivePackage, RefusalReason> {
        let manifest = Manifest::from_package(&package)?;
        ActivePackage::with_manifest(id, layer, path, file_name, identity, package, manifest)
    }

    /// As [`ActivePackage::new`], with the manifest already known (a lazy
    /// package's, from the signed index, checked against its attributes).
    pub fn with_manifest(
        id: u64,
        layer: Layer,
        path: PathBuf,
        file_name: String,
        identity: FileIdentity,
        package: Package,
        manifest: Manifest,
    ) -> Result<ActivePackage, RefusalReason> {
        check_reserved_names(&package)?;
        let toc = package.toc();
        let manifest_bytes = toc
            .lookup(toc.root().id(), exos_manifest::MANIFEST_FILE)
            .map_or(0, |e| e.size());
        // The manifest's decoded form is a few times its JSON; view nodes
        // exist in the layer tree and the merged one.
        let memory =
            package.memory_usage() + 4 * manifest_bytes + toc.len() as u64 * VIEW_BYTES_PER_ENTRY;
        Ok(ActivePackage {
            id,
            layer,
            path,
            file_name,
            identity,
            package,
            manifest,
            sha256: None,
            signed_by: None,
            last_chunk_read: AtomicU64::new(u64::MAX),
            memory,
            user: None,
            digests: OnceLock::new(),
            digest_queued: std::sync::atomic::AtomicBool::new(false),
            remote: None,
        })
    }
}

/// A package file that was not activated, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The layer it was found in.
    pub layer: Layer,
    /// Its file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: RefusalReason,
}

/// The outcome of a scan.
#[derive(Default)]
pub struct Activation {
    /// Per layer, sorted by file name.
    pub layers: PerLayer<Vec<Arc<ActivePackage>>>,
    /// Package files not activated, and why.
    pub refused: Vec<Refused>,
    /// Per layer, who owns its files in the view.
    pub owners: PerLayer<Owner>,
    /// Per layer, whether its packages directory may only be written by
    /// root (the condition for serving setuid bits from it at all).
    pub root_only: PerLayer<bool>,
    /// Sum of the active packages' [`ActivePackage::memory`].
    pub memory: u64,
    /// The trust store this activation was decided under.
    pub trust: TrustStore,
    /// Per-user layers (`ROOT/users/NAME/packages`), sorted by user; each
    /// sorted by file name. Their packages rank as the `user` layer.
    pub users: Vec<(UserName, Vec<Arc<ActivePackage>>)>,
    /// Runtime overlays of active packages (`exos overlay add`).
    pub overlays: Vec<ActiveOverlay>,
}

/// A runtime overlay of one active package, its directory scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveOverlay {
    /// [`ActivePackage::id`] of the package it covers.
    pub package_id: u64,
    /// Its name.
    pub package: String,
    /// Its layer.
    pub layer: Layer,
    /// The overlay directory.
    pub dir: PathBuf,
    /// Added with `--force` to a layer that requires signed content.
    pub forced: bool,
    /// Every entry below `dir`, parents before children.
    pub entries: Vec<OverlayEntry>,
}

/// One file, directory or symlink of an overlay directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayEntry {
    /// Path relative to the overlay directory (`bin/hello`).
    pub path: String,
    /// Directory, file or symlink.
    pub kind: OverlayKind,
    /// Modification time (ns) and size when scanned: a change makes a new
    /// view, and a new inode, so no stale page is ever served.
    pub stamp: (i128, u64),
}

/// What an overlay entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// Overlay directories larger than this are refused (an overlay is for
/// debugging and hot fixes, not a second package).
pub const MAX_OVERLAY_ENTRIES: usize = 100_000;
const MAX_OVERLAY_DEPTH: usize = 64;

impl ActiveOverlay {
    /// Every directory of the overlay (for the live watcher).
    pub fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        std::iter::once(self.dir.clone()).chain(
            self.entries
                .iter()
                .filter(|e| e.kind == OverlayKind::Dir)
                .map(|e| self.dir.join(&e.path)),
        )
    }
}

/// Whether a mount running as this process's user would serve `dir` as
/// an overlay (the check the mount makes; `exos overlay add` makes it
/// first so that a directory the mount would refuse is refused at once):
/// the number of entries it holds, or why not.
pub fn check_overlay_dir(dir: &Path) -> Result<usize, String> {
    scan_overlay_dir(dir).map(|entries| entries.len())
}

/// Lists `dir` (not following symlinks; sockets, devices and FIFOs are
/// left out), bounded in entries and depth. Every entry must belong to
/// the serving user and be writable by no one else: what an overlay shows
/// everybody (root's processes included) must not be changeable by
/// another user.
fn scan_overlay_dir(dir: &Path) -> Result<Vec<OverlayEntry>, String> {
    let me = rustix::process::geteuid().as_raw();
    let check = |path: &Path, meta: &std::fs::Metadata| -> Result<(), String> {
        if meta.uid() != me || (!meta.file_type().is_symlink() && meta.mode() & 0o022 != 0) {
            return Err(format!(
                "{} is owned by uid {} with mode {:o}: overlay files must be the mount's user's ({me}) and writable by no one else",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        Ok(())
    };
    let top = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !top.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    check(dir, &top)?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        if depth > MAX_OVERLAY_DEPTH {
            return Err(format!(
                "{}: deeper than {MAX_OVERLAY_DEPTH} levels",
                dir.display()
            ));
        }
        let here = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel)
        };
        let mut names: Vec<String> = std::fs::read_dir(&here)
            .map_err(|e| format!("{}: {e}", here.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let full = here.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                continue; // gone meanwhile
            };
            let ty = meta.file_type();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let kind = if ty.is_dir() {
                OverlayKind::Dir
            } else if ty.is_file() {
                OverlayKind::File
            } else if ty.is_symlink() {
                OverlayKind::Symlink
            } else {
                continue;
            };
            check(&full, &meta)?;
            if kind == OverlayKind::Dir {
                stack.push((path.clone(), depth + 1));
            }
            let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
            out.push(OverlayEntry {
                path,
                kind,
                stamp: (mtime, meta.size()),
            });
            if out.len() > MAX_OVERLAY_ENTRIES {
                return Err(format!(
                    "{}: more than {MAX_OVERLAY_ENTRIES} entries",
                    dir.display()
                ));
            }
        }
    }
    // Parents before children: sort by path components.
    out.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    Ok(out)
}

impl Activation {
    /// Every active package: the layers', then the per-user layers'.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ActivePackage>> {
        Layer::ALL
            .into_iter()
            .flat_map(|l| self.layers.get(l))
            .chain(self.users.iter().flat_map(|(_, v)| v))
    }
}

/// How to scan a root.
pub struct Scanner {
    /// The EXOS root.
    pub root: PathBuf,
    /// APIs the host provides (for `uses`).
    pub host_apis: Vec<Provide>,
    /// The chunk cache every opened package shares.
    pub cache: Arc<ChunkCache>,
    /// A state list to mount instead of the root's active list.
    pub state_list: Option<PathBuf>,
    /// Memory all active packages together may cost; packages past it are
    /// refused, lower layers first served.
    pub memory_budget: u64,
    /// The block cache of lazily installed packages (directory, bytes),
    /// opened when the first one is activated.
    /// `None` when there is none (a user without a home): lazily installed
    /// packages are then refused, saying so.
    pub block_cache: Option<(PathBuf, u64)>,
    opened_block_cache: OnceLock<Result<Arc<exos_lazy::BlockCache>, String>>,
    /// Network timeouts for lazy packages.
    pub timeouts: exos_repo::Timeouts,
    /// Keys for sealed packages, and the layers they serve.
    pub keys: MountKeys,
    next_id: AtomicU64,
}

/// Threads that start reading package files before activation opens them
/// ([`Scanner::prefetch`]): the work is waiting for the disk, so more
/// threads than cores keep its queue full (4 and 16 measured alike).
const PREFETCH_THREADS: usize = 8;

/// Fewest packages a prefetching thread is given.
const PREFETCH_MIN: usize = 64;

/// Opens a file to read without following a link, blocking or making
/// itself the controlling terminal.
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            (rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::NOCTTY)
                .bits() as i32,
        )
        .open(path)
}

/// Default [`Scanner::memory_budget`]: 1 GiB (a Debian userland of 100,000
/// files needs ~30 MB).
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// The owner of a packages directory (its parent's when it does not
/// exist), and whether only root can change what it holds: the directory
/// and every ancestor are root's, and none is writable by others unless
/// sticky (then nobody else can rename the root-owned child away).
fn owner_of(dir: &Path) -> (Owner, bool) {
    use std::os::unix::fs::PermissionsExt;
    let existing = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    };
    let Ok(m) = std::fs::metadata(existing) else {
        return (Owner::default(), false);
    };
    let owner = Owner {
        uid: m.uid(),
        gid: m.gid(),
    };
    let writable_by_others = |m: &std::fs::Metadata| m.permissions().mode() & 0o022 != 0;
    let sticky = |m: &std::fs::Metadata| m.permissions().mode() & 0o1000 != 0;
    let mut root_only = m.uid() == 0 && !writable_by_others(&m);
    let canonical = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    for ancestor in canonical.ancestors().skip(1) {
        match std::fs::metadata(ancestor) {
            Ok(a) if a.uid() == 0 && (!writable_by_others(&a) || sticky(&a)) => {}
            _ => root_only = false,
        }
    }
    (owner, root_only)
}

/// Opens `ROOT/users/USER/packages` (walked from the opened `users`
/// directory without following links) if only USER and root control what
/// it holds: `users/` is root's, `users/USER` and its `packages` belong to
/// root or to USER, and no one else can write any of them. Else someone
/// could put programs in another user's view.
fn user_layer(users: &WalkedDir, user: &UserName) -> Result<WalkedDir, String> {
    let uid = nix::unistd::User::from_name(user.as_str())
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| format!("no user {user} on this system: its layer is not activated"))?;
    let not_theirs = |path: &Path| {
        format!(
            "{} must be a directory of root or {user} that no one else can write (and no link): {user}'s layer is not activated",
            path.display()
        )
    };
    if users.writers != Writers::Root {
        return Err(format!(
            "{} must be a directory of root that no one else can write: {user}'s layer is not activated",
            users.path.display()
        ));
    }
    let mine = users
        .open_dir(user.as_str())
        .map_err(|e| format!("{e}: {}", not_theirs(&users.path.join(user.as_str()))))?;
    if !mine.writers.only(uid) {
        return Err(not_theirs(&mine.path));
    }
    let packages = mine
        .open_dir("packages")
        .map_err(|e| format!("{e}: {}", not_theirs(&mine.path.join("packages"))))?;
    if !packages.writers.only(uid) {
        return Err(not_theirs(&packages.path));
    }
    Ok(packages)
}

impl Scanner {
    /// A scanner of `root`: no state list, keys or block cache; the default memory budget.
    pub fn new(root: PathBuf, host_apis: Vec<Provide>, cache: Arc<ChunkCache>) -> Scanner {
        Scanner {
            root,
            host_apis,
            cache,
            state_list: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            block_cache: None,
            opened_block_cache: OnceLock::new(),
            timeouts: exos_repo::Timeouts::default(),
            keys: MountKeys::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Directory of a layer's package files.
    pub fn packages_dir(&self, layer: Layer) -> PathBuf {
        Layout::new(&self.root).packages_dir(layer)
    }

    /// The state list in force: the override, else the root's active list
    /// when it exists.
    fn state_list(&self) -> Option<PathBuf> {
        match &self.state_list {
            Some(p) => Some(p.clone()),
            None => {
                let p = Layout::new(&self.root).active_list();
                p.exists().then_some(p)
            }
        }
    }

    /// Scans the root; `previous` lets unchanged packages be reused.
    ///
    /// With a state list, exactly the listed packages are candidates, each
    /// found in its layer's packages directory or in the store and checked
    /// against its SHA-256; other files in the packages directories are
    /// refused. Without one, every `*.hpkg` in the packages directories is.
    pub fn scan(&self, previous: Option<&Activation>) -> Activation {
        let mut out = Activation::default();
        let reuse: HashMap<(Layer, FileIdentity), &Arc<ActivePackage>> = previous
            .into_iter()
            .flat_map(|a| a.all())
            .map(|p| ((p.layer, p.identity), p))
            .collect();
        let layout = Layout::new(&self.root);
        out.trust = match TrustStore::read(&layout) {
            Ok(t) => t,
            Err(e) => {
                // Without a readable policy nothing is trusted.
                out.refused.push(Refused {
                    layer: Layer::System,
                    path: layout.trust_store(),
                    reason: RefusalReason::TrustStore(Arc::new(e)),
                });
                return out;
            }
        };
        // Packages admitted under another trust store are checked again.
        let trust_unchanged = previous.is_some_and(|p| p.trust == out.trust);
        let reuse: HashMap<(Layer, FileIdentity), &Arc<ActivePackage>> = reuse
            .into_iter()
            .filter(|((layer, _), _)| trust_unchanged || !out.trust.requires_signature(*layer))
            .collect();
        let list = match self.state_list() {
            None => None,
            Some(path) => match StateList::read(&path) {
                Ok(state) => Some(state.entries),
                Err(reason) => {
                    // Without a readable state nothing is trusted.
                    out.refused.push(Refused {
                        layer: Layer::System,
                        path,
                        reason: RefusalReason::StateList(Arc::new(reason)),
                    });
                    return out;
                }
            },
        };
        let store = open_beneath(&self.root, &["system", "state", "store"]).ok();
        for layer in Layer::ALL {
            let dir = self.packages_dir(layer);
            (*out.owners.get_mut(layer), *out.root_only.get_mut(layer)) = owner_of(&dir);
            // Opened along the way without following links; missing: empty.
            let walked = open_beneath(&self.root, &[layer.name(), "packages"]).ok();
            let files: Vec<String> = walked
                .as_ref()
                .and_then(|d| d.names().ok())
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.ends_with(".hpkg"))
                .collect();
            let Some(list) = &list else {
                let Some(walked) = &walked else { continue };
                self.prefetch(Some(walked), &files, |name| (Some(name.as_str()), None));
                for name in files {
                    match self.activate(layer, walked, &name, None, &reuse, &out.trust) {
                        Ok(Some(p)) => self.admit(&mut out, p),
                        Ok(None) => {}
                        Err(reason) => out.refused.push(Refused {
                            layer,
                            path: walked.path.join(&name),
                            reason,
                        }),
                    }
                }
                continue;
            };
            let mut wanted: Vec<&StateEntry> = list.iter().filter(|e| e.layer == layer).collect();
            wanted.sort_by(|a, b| a.file.cmp(&b.file));
            for name in &files {
                let listed = wanted
                    .binary_search_by(|e| e.file.as_str().cmp(name))
                    .is_ok();
                if !listed {
                    out.refused.push(Refused {
                        layer,
                        path: dir.join(name),
                        reason: RefusalReason::NotInState,
                    });
                }
            }
            self.prefetch(walked.as_ref(), &wanted, |entry| {
                (Some(entry.file.as_str()), Some(entry.sha256))
            });
            for entry in wanted {
                match self.activate_listed(
                    layer,
                    entry,
                    walked.as_ref(),
                    store.as_ref(),
                    &reuse,
                    &out.trust,
                ) {
                    Ok(p) => self.admit(&mut out, p),
                    Err(reason) => out.refused.push(Refused {
                        layer,
                        path: layout.placed(entry),
                        reason,
                    }),
                }
            }
        }
        self.scan_users(&mut out, &reuse);
        self.check_uses(&mut out);
        self.scan_overlays(&mut out, &layout);
        out
    }

    /// The runtime overlays of active packages (shared layers): each
    /// directory listed now; one that cannot be read, or sits in a layer
    /// whose policy requires signatures and was not forced, is refused
    /// (the package itself stays).
    fn scan_overlays(&self, out: &mut Activation, layout: &Layout) {
        let path = layout.overlays_file();
        let all = match exos_root::overlays::RuntimeOverlays::read(&path) {
            Ok(a) => a,
            Err(e) => {
                out.refused.push(Refused {
                    layer: Layer::System,
                    path,
                    reason: RefusalReason::OverlayFile(Arc::new(e)),
                });
                return;
            }
        };
        for o in all.overlays {
            let Some(p) = out
                .layers
                .get(o.layer)
                .iter()
                .find(|p| p.manifest.name == o.package)
            else {
                continue; // its package is not active: nothing to cover
            };
            let refuse = |reason: String| Refused {
                layer: o.layer,
                path: o.dir.clone(),
                reason: RefusalReason::Overlay {
                    package: o.package.clone(),
                    reason,
                },
            };
            if out.trust.requires_signature(o.layer) && !o.forced {
                out.refused.push(refuse(format!(
                    "the {} layer accepts only signed packages (exos overlay add --force)",
                    o.layer.name()
                )));
                continue;
            }
            match scan_overlay_dir(&o.dir) {
                Ok(entries) => out.overlays.push(ActiveOverlay {
                    package_id: p.id,
                    package: o.package.clone(),
                    layer: o.layer,
                    dir: o.dir.clone(),
                    forced: o.forced,
                    entries,
                }),
                Err(reason) => out.refused.push(refuse(reason)),
            }
        }
    }

    /// The per-user layers: every `*.hpkg` in `ROOT/users/NAME/packages`,
    /// activated as the user drops them in (as in Haiku's
    /// `~/config/packages`; the root's numbered states do not cover them),
    /// under the `user` layer's trust policy, after every shared layer in
    /// the memory budget. The directories are walked without following
    /// links and each file is opened so, and served only if NAME could
    /// read it ([`Writers::admits`]); the mount's keys never apply here.
    fn scan_users(
        &self,
        out: &mut Activation,
        reuse: &HashMap<(Layer, FileIdentity), &Arc<ActivePackage>>,
    ) {
        let layout = Layout::new(&self.root);
        let trust = out.trust.clone();
        let Ok(users) = open_beneath(&self.root, &["users"]) else {
            return;
        };
        for user in layout.users() {
            let dir = match user_layer(&users, &user) {
                Ok(dir) => dir,
                Err(reason) => {
                    out.refused.push(Refused {
                        layer: Layer::User,
                        path: layout.user_packages_dir(&user),
                        reason: RefusalReason::UserLayer(reason),
                    });
                    continue;
                }
            };
            let owner = Owner {
                uid: dir.stat.st_uid,
                gid: dir.stat.st_gid,
            };
            let files: Vec<String> = dir
                .names()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.ends_with(".hpkg"))
                .collect();
            out.users.push((user.clone(), Vec::new()));
            for name in files {
                let opened = self.open_file(&dir, &name).and_then(|found| {
                    let Some((file, identity)) = found else {
                        return Ok(None);
                    };
                    let reused = reuse.get(&(Layer::User, identity)).filter(|p| {
                        p.user
                            .as_ref()
                            .is_some_and(|(u, o)| *u == user && *o == owner)
                    });
                    match reused {
                        Some(p) => Ok(Some(Arc::clone(p))),
                        None => self
                            .open(
                                Layer::User,
                                &dir,
                                &name,
                                file,
                                identity,
                                None,
                                &trust,
                                KeyRing::default(),
                            )
                            .map_err(|e| self.keys.withheld(None, dir.writers, &e).unwrap_or(e))
                            .map(|mut p| {
                                p.user = Some((user.clone(), owner));
                                Some(Arc::new(p))
                            }),
                    }
                });
                match opened {
                    Ok(Some(p)) => {
                        if self.charge(out, &p) {
                            if let Some((_, v)) = out.users.last_mut() {
                                v.push(p);
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => out.refused.push(Refused {
                        layer: Layer::User,
                        path: dir.path.join(&name),
                        reason,
                    }),
                }
            }
        }
    }

    /// Adds an opened package to the activation if the mount's memory
    /// budget still allows it (layers are scanned system first, so a
    /// higher layer can never starve a lower one).
    fn admit(&self, out: &mut Activation, p: Arc<ActivePackage>) {
        if self.charge(out, &p) {
            out.layers.get_mut(p.layer).push(p);
        }
    }

    /// Charges `p` to the mount's memory budget; false (and `p` refused,
    /// with the reason) when it does not fit.
    fn charge(&self, out: &mut Activation, p: &ActivePackage) -> bool {
        let total = out.memory.saturating_add(p.memory);
        if total > self.memory_budget {
            out.refused.push(Refused {
                layer: p.layer,
                path: p.path.clone(),
                reason: RefusalReason::MemoryBudget {
                    needs_kib: p.memory / 1024,
                    left_kib: self.memory_budget.saturating_sub(out.memory) / 1024,
                    budget_kib: self.memory_budget / 1024,
                },
            });
            return false;
        }
        out.memory = total;
        true
    }

    /// Opens (or reuses) a lazily installed package: its record and block
    /// map from the state directory, its bytes through the block cache.
    fn activate_lazy(
        &self,
        layer: Layer,
        entry: &StateEntry,
        record: &Path,
        reuse: &HashMap<(Layer, FileIdentity), &Arc<ActivePackage>>,
        trust: &TrustStore,
    ) -> Result<Arc<ActivePackage>, RefusalReason> {
        let lazy_err = |e: String| RefusalReason::Lazy(e);
        let meta = std::fs::metadata(record)
            .map_err(|e| lazy_err(format!("{}: {e}", record.display())))?;
        let identity = FileIdentity::of(&meta);
        if let Some(p) = reuse.get(&(layer, identity)) {
            if p.sha256 == Some(entry.sha256) && p.remote.is_some() {
                return Ok(Arc::clone(p));
            }
        }
        if trust.requires_signature(layer) {
            return Err(RefusalReason::LazyInSignedLayer(layer));
        }
        let layout = Layout::new(&self.root);
        let lazy = exos_lazy::LazyPackage::read(&layout, &entry.sha256)
            .map_err(|e| lazy_err(e.to_string()))?
            .ok_or_else(|| lazy_err(format!("{}: vanished", record.display())))?;
        let cache = self
            .opened_block_cache
            .get_or_init(|| {
                let Some((dir, bytes)) = &self.block_cache else {
                    return Err("no block cache was given to this mount".to_string());
                };
                exos_lazy::BlockCache::open(dir, *bytes)
                    .map(Arc::new)
                    .map_err(|e| format!("block cache {}: {e}", dir.display()))
            })
            .clone()
            .map_err(lazy_err)?;
        let source = exos_lazy::RemoteSource::new(lazy, cache, self.timeouts)
            .map_err(|e| lazy_err(e.to_string()))?;
        source
            .prefetch_metadata()
            .map_err(|e| lazy_err(e.to_string()))?;
        // Records live in the state directory, which root alone controls.
        let keys = self.keys.for_layer(layer, Writers::Root);
        let package =
            Package::from_source(source.clone(), source.url(), &OpenOptions::with_keys(keys))?;
        source.follow_readers();
        // The manifest the signed index gave (kept in the record), not
        // `manifest.json`: reading that would cost a round trip.
        let manifest = Manifest::parse(
            source.package().record.manifest.to_string().as_bytes(),
            &record.display().to_string(),
        )?;
        manifest.check_against(&package)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let p = ActivePackage::with_manifest(
            id,
            layer,
            record.to_path_buf(),
            entry.file.to_string(),
            identity,
            package,
            manifest,
        )?;
        p.package.heap().use_shared_cache(self.cache.clone(), id);
        Ok(Arc::new(ActivePackage {
            sha256: Some(entry.sha256),
            remote: Some(source),
            ..p
        }))
    }

    /// Asks the kernel to start reading every package file `place` names
    /// in `dir` (opened beneath it without following links) and the
    /// digests remembered for its SHA-256, on [`PREFETCH_THREADS`]
    /// threads, before they are opened one by one. Cold, each is a small
    /// read the disk could serve alongside the others: on 10,000 small
    /// packages this took a cold activation from 2.5 to 1.2 s under load
    /// (BENCHMARKS.md, "Many packages"). Opening and parsing stay on this
    /// thread: parsed across threads, the packages cost the daemon more
    /// memory (each thread's allocator keeps its own pages), and cached
    /// reads gained little on two cores.
    fn prefetch<T: Sync>(
        &self,
        dir: Option<&WalkedDir>,
        items: &[T],
        place: impl Fn(&T) -> (Option<&str>, Option<Sha256>) + Sync,
    ) {
        use rustix::fs::{fadvise, Advice};
        let layout = Layout::new(&self.root);
        let read_ahead = |item: &T| {
            let (name, sha) = place(item);
            let opened = dir
                .zip(name)
                .and_then(|(dir, name)| dir.open_file(name).ok());
            if let Some(opened) = opened {
                let _ = fadvise(&opened.file, 0, None, Advice::WillNeed);
            }
            if let Some(sha) = sha {
                if let Ok(file) = open_no_follow(&layout.digests(&sha)) {
                    let _ = fadvise(&file, 0, None, Advice::WillNeed);
                }
            }
        };
        let per_thread = items.len().div_ceil(PREFETCH_THREADS).max(PREFETCH_MIN);
        if items.len() <= PREFETCH_MIN {
            return; // a few packages: not worth a thread
        }
        std::thread::scope(|s| {
            for part in items.chunks(per_thread) {
                s.spawn(|| part.iter().for_each(&read_ahead));
            }
        });
    }

    /// A package the state lists: found in its layer's packages directory
    /// or in the store (checked against its SHA-256), else as a lazy
    /// record.
    fn activate_listed(
        &self,
        layer: Layer,
        entry: &StateEntry,
        packages: Option<&WalkedDir>,
        store: Option<&WalkedDir>,
        reuse: &HashMap<(Layer, FileIdentity), &Arc<ActivePackage>>,
        trust: &TrustStore,
    ) -> Result<Arc<ActivePackage>, RefusalReason> {
        let stored = format!("{}.hpkg", entry.sha256);
        let places = [(packages, entry.file.as_str()), (store, stored.as_str())];
        let mut last = None;
        for (dir, name) in places {
            let Some(dir) = dir else { continue };
            match self.activate(layer, dir, name, Some(&entry.sha256), reuse, trust) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(reason) => last = Some(reason),
            }
        }
        if let Some(reason) = last {
            return Err(reason);
        }
        let lazy = Layout::new(&self.root).lazy_record(&entry.sha256);
        if lazy.exists() {
            return self.activate_lazy(layer, entry, &lazy, reuse, trust);
        }
        Err(RefusalReason::Missing)
    }

    /// Opens `name` in `dir` without following a link and checks that it
    /// may be served from there; `Ok(None)` when it is not there (vanished
    /// since listing: a concurrent change).
    fn open_file(
        &self,
        dir: &WalkedDir,
        name: &str,
    ) -> Result<Option<(std::fs::File, FileIdentity)>, RefusalReason> {
        let opened = match dir.open_file(name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // The refusal names the file already: its reason does not.
            Err(e) => {
                let path = dir.path.join(name);
                let text = e.to_string();
                let reason = text
                    .strip_prefix(&format!("{}: ", path.display()))
                    .unwrap_or(&text);
                return Err(RefusalReason::Unservable(reason.to_string()));
            }
        };
        dir.writers
            .admits(&opened.stat)
            .map_err(|e| RefusalReason::Unservable(e.to_string()))?;
        Ok(Some((opened.file, FileIdentity::of_stat(&opened.stat))))
    }

    /// Opens (or reuses) package file `name` of `dir`; `Ok(None)` when it
    /// vanished.
    fn activate(
        &self,
        layer: Layer,
        dir: &WalkedDir,
        name: &str,
        expected_sha: Option<&Sha256>,
        reuse: &HashMap<(Layer, FileIdentity), &Arc<ActivePackage>>,
        trust: &TrustStore,
    ) -> Result<Option<Arc<ActivePackage>>, RefusalReason> {
        let Some((file, identity)) = self.open_file(dir, name)? else {
            return Ok(None);
        };
        if let Some(p) = reuse.get(&(layer, identity)) {
            if expected_sha.is_none() || p.sha256.as_ref() == expected_sha {
                return Ok(Some(Arc::clone(p)));
            }
        }
        let keys = self.keys.for_layer(layer, dir.writers);
        self.open(layer, dir, name, file, identity, expected_sha, trust, keys)
            .map(|p| Some(Arc::new(p)))
            .map_err(|e| {
                self.keys
                    .withheld(Some(layer), dir.writers, &e)
                    .unwrap_or(e)
            })
    }

    /// Opens an opened package file: its digests when the state or the
    /// layer's policy needs them (read from the descriptor, never the path
    /// again), its signature, the package itself with `keys`.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        layer: Layer,
        dir: &WalkedDir,
        name: &str,
        file: std::fs::File,
        identity: FileIdentity,
        expected_sha: Option<&Sha256>,
        trust: &TrustStore,
        keys: KeyRing,
    ) -> Result<ActivePackage, RefusalReason> {
        let path = dir.path.join(name);
        // The refusal names the file already: its reason does not.
        let io = |e: std::io::Error| RefusalReason::Unservable(e.to_string());
        let signed = trust.requires_signature(layer);
        // One read gives both digests when a signature must be checked.
        let digest = if signed {
            Some(FileDigest::of_reader(&file).map_err(io)?)
        } else {
            None
        };
        let sha256 = match expected_sha {
            Some(want) => {
                let got = match &digest {
                    Some(d) => d.sha256,
                    None => Sha256::of_reader(&file).map_err(io)?,
                };
                if &got != want {
                    return Err(RefusalReason::Checksum { got, want: *want });
                }
                Some(got)
            }
            None => None,
        };
        let signed_by = match &digest {
            Some(d) => {
                // The signature accepted at install, else one beside the file.
                let layout = Layout::new(&self.root);
                let kept = layout.signature(&d.sha256);
                let sig = [kept, exos_trust::beside(&path)]
                    .into_iter()
                    .find(|p| p.is_file());
                match trust.admit(layer, d, sig.as_deref())? {
                    exos_trust::Verdict::Signed { key, .. } => Some(key),
                    exos_trust::Verdict::Unsigned => None,
                }
            }
            None => None,
        };
        let package = Package::from_file(file, &path, &OpenOptions::with_keys(keys))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let p = ActivePackage::new(id, layer, path, name.to_string(), identity, package)?;
        p.package.heap().use_shared_cache(self.cache.clone(), id);
        // Content digests remembered by an earlier mount: the first view
        // already shares identical files (the digester fills in the rest).
        if let Some(sha) = &sha256 {
            let remembered = Layout::new(&self.root).digests(sha);
            if let Ok(bytes) = std::fs::read(&remembered) {
                if let Ok(d) = ContentDigests::parse(&bytes, &remembered) {
                    let _ = p.digests.set(Arc::new(d));
                }
            }
        }
        Ok(ActivePackage {
            sha256,
            signed_by,
            ..p
        })
    }

    /// Refuses packages whose `uses` nothing provides, until stable (a
    /// refused package's provides disappear with it).
    fn check_uses(&self, act: &mut Activation) {
        loop {
            // A shared layer's package counts only shared providers; a
            // per-user package also its own user's (never another user's:
            // nothing one user drops in may activate anything for others).
            let provided = |dep: &Dependency, me: &Arc<ActivePackage>, act: &Activation| {
                let user_of = |p: &ActivePackage| p.user.as_ref().map(|(u, _)| u.clone());
                self.host_apis.iter().any(|p| dep.is_met_by(p))
                    || act.all().any(|o| {
                        !Arc::ptr_eq(o, me)
                            && (o.user.is_none() || user_of(o) == user_of(me))
                            && o.manifest.provides.iter().any(|p| dep.is_met_by(p))
                    })
            };
            let mut refused_now = Vec::new();
            for p in act.all() {
                if let Some(missing) = p.manifest.uses.iter().find(|u| !provided(u, p, act)) {
                    refused_now.push((p.id, RefusalReason::MissingApi(missing.to_string())));
                }
            }
            if refused_now.is_empty() {
                return;
            }
            let mut memory_freed = 0;
            let mut refused = Vec::new();
            let (layers, users) = (&mut act.layers, &mut act.users);
            let lists = [&mut layers.system, &mut layers.common, &mut layers.user]
                .into_iter()
                .chain(users.iter_mut().map(|(_, v)| v));
            for list in lists {
                list.retain(|p| match refused_now.iter().find(|(id, _)| *id == p.id) {
                    Some((_, reason)) => {
                        memory_freed += p.memory;
                        refused.push(Refused {
                            layer: p.layer,
                            path: p.path.clone(),
                            reason: reason.clone(),
                        });
                        false
                    }
                    None => true,
                });
            }
            act.memory -= memory_freed;
            act.refused.extend(refused);
        }
    }
}
