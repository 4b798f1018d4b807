//! The FUSE side: answers kernel requests from the current [`View`].
//!
//! Requests run on several threads. The view is swapped atomically when the
//! active set changes.
//!
//! `open` and `opendir` answer ENOSYS: the kernel then stops sending them
//! (and `flush`/`release`) for good and keeps page and directory caches
//! across opens, so a warm read never reaches this process. This is safe
//! because an inode number always stands for the same bytes (see `view`).
//! Reads therefore arrive by inode; an inode whose package left the view
//! while the kernel still knows it (an open file, a cached dentry) is kept
//! as an *orphan* until the kernel forgets it, so open files keep reading.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exos_hpkg::tree::escape_attr_name;
use exos_hpkg::{EntryId, Timestamp};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use rustc_hash::FxHashMap;

use crate::activate::ActivePackage;
use crate::exec_cache::{ExecCache, ExecCacheServe};
use crate::known::Known;
use crate::readahead::ReadAhead;
use crate::view::{Kind, Source, View};

/// Prefix under which Haiku file attributes appear as extended attributes
/// (the convention of Haiku's Linux host tools; `exos build` reads it back).
pub const XATTR_PREFIX: &str = "user.haiku.";
/// The extended attribute naming the package a file comes from: `NAME
/// VERSION LAYER /PATH` (`exos owner` reads it). Served whenever the mount
/// serves extended attributes (see [`XattrPolicy`]).
pub const PACKAGE_XATTR: &str = "user.exos.package";

/// The current view, shared between the FUSE threads and whoever swaps in
/// new views. Readers never wait (arc-swap): every request loads the view
/// once, a rebuild replaces it whole.
#[derive(Clone)]
pub struct ViewSlot(Arc<arc_swap::ArcSwap<View>>);

impl ViewSlot {
    /// The current view.
    pub fn get(&self) -> Arc<View> {
        self.0.load_full()
    }

    /// Makes `view` current; returns the previous one.
    pub fn swap(&self, view: View) -> Arc<View> {
        self.0.swap(Arc::new(view))
    }
}

/// What a file that left the view serves until the kernel forgets its
/// inode: an open file — or a name looked up just before a swap and read
/// just after — keeps reading what it was.
#[derive(Clone)]
enum Orphan {
    /// An entry of a package (an open file of a removed package).
    Entry(Arc<ActivePackage>, EntryId),
    /// A generated file's bytes as its view had them (`status.json`,
    /// whose inode changes with every view).
    Data(Arc<[u8]>),
    /// A runtime overlay's host file.
    Host(crate::view::HostNode),
}

/// Files that left the view, by inode number.
type Orphans = FxHashMap<u64, Orphan>;

/// Moves files that leave the view, and that the kernel still knows, to the
/// orphan table.
pub struct OrphanKeeper {
    known: Arc<Mutex<Known>>,
    orphans: Arc<Mutex<Orphans>>,
}

impl OrphanKeeper {
    /// Makes `view` current in `slot`; files the kernel still knows that
    /// the new view lacks move to the orphan table in the same step. Both
    /// tables are held throughout: a lookup resolves a name and counts the
    /// inode it answers with under `known` (so it happened wholly before
    /// or wholly after the swap), and a request for an inode the new view
    /// lacks waits on `orphans` until it is adopted.
    pub fn swap(&self, slot: &ViewSlot, view: View) -> Arc<View> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut orphans = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        let old = slot.swap(view);
        let new = slot.get();
        for ino in known.inodes() {
            if new.lookup_ino(ino).is_some() {
                continue;
            }
            let Some(index) = old.lookup_ino(ino) else {
                continue;
            };
            let orphan = match old.node(index).source {
                Source::Entry { pkg, entry } => {
                    Orphan::Entry(old.packages[pkg as usize].clone(), entry)
                }
                Source::File { .. } => match old.data(index) {
                    Some(d) => Orphan::Data(d.clone()),
                    None => continue,
                },
                Source::Host { host } if old.kind(index) != crate::view::Kind::Dir => {
                    Orphan::Host(old.host[host as usize].clone())
                }
                _ => continue,
            };
            orphans.insert(ino, orphan);
        }
        old
    }

    /// Orphans still held (for status and tests).
    pub fn count(&self) -> usize {
        self.orphans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// How many reads the mount has served: background work (the content
/// digester) waits for a quiet moment instead of competing with readers
/// for the cores and the disk.
#[derive(Clone, Default)]
pub struct Activity(Arc<std::sync::atomic::AtomicU64>);

impl Activity {
    fn touch(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn reads(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns once no read came for `quiet`, or after `at_most`.
    pub fn wait_until_quiet(&self, quiet: Duration, at_most: Duration) {
        let started = std::time::Instant::now();
        loop {
            let before = self.reads();
            std::thread::sleep(quiet);
            if self.reads() == before || started.elapsed() >= at_most {
                return;
            }
        }
    }
}

/// Whether extended attributes (Haiku file attributes) are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrPolicy {
    /// Serve them if a package active at the first request carries any;
    /// otherwise answer that the file system has none, after which the
    /// kernel stops asking for good. That spares a round trip per file for
    /// `ls -l` (ACLs, security labels) and per exec (capabilities), at the
    /// price that attributes of packages activated later stay hidden until
    /// the next mount.
    Auto,
    /// Always serve them.
    Always,
}

/// The mounted filesystem.
pub struct PackageFs {
    view: ViewSlot,
    /// Inode numbers the kernel holds (looked up and not yet forgotten).
    known: Arc<Mutex<Known>>,
    /// Files of packages that left the view, by inode, while still known.
    orphans: Arc<Mutex<Orphans>>,
    ttl: Duration,
    readahead: Option<Arc<ReadAhead>>,
    xattrs: XattrPolicy,
    /// Set once the kernel was told there are no extended attributes.
    no_xattrs: std::sync::atomic::AtomicBool,
    /// The persistent exec cache (see [`crate::exec_cache`]); None when
    /// off, or when passthrough was asked for and the kernel cannot.
    exec_cache: Option<Arc<ExecCache>>,
    exec_serve: ExecCacheServe,
    /// Cache entries answering reads ([`ExecCacheServe::Reads`]), by
    /// inode: opened once, not per read.
    exec_files: Mutex<FxHashMap<u64, Arc<std::fs::File>>>,
    /// Bytes of reads answered from the exec cache.
    exec_read_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// Files open, by inode: how (passthrough to a cache entry, or through
    /// this process) and how many times. One inode is never open both
    /// ways at once (the kernel refuses that).
    opened: Mutex<FxHashMap<u64, Opened>>,
    /// Reads served, for background work to wait for quiet.
    activity: Activity,
}

/// How an inode's open files are served.
enum Opened {
    Cached(u32),
    Passthrough {
        count: u32,
        backing: Arc<fuser::BackingId>,
        _entry: crate::exec_cache::Entry,
    },
}

/// A package time as the kernel gets it. Any stored value is served:
/// seconds past what `time_t` holds are clamped to its maximum.
pub fn time(t: Timestamp) -> SystemTime {
    let secs = t.secs.min(i64::MAX as u64);
    UNIX_EPOCH
        .checked_add(Duration::new(secs, t.nanos.min(999_999_999)))
        .unwrap_or(UNIX_EPOCH)
}

impl PackageFs {
    /// The file system serving `view`, with attribute and entry TTL `ttl`.
    pub fn new(view: View, ttl: Duration) -> PackageFs {
        PackageFs {
            view: ViewSlot(Arc::new(arc_swap::ArcSwap::from_pointee(view))),
            known: Arc::default(),
            orphans: Arc::default(),
            ttl,
            readahead: None,
            xattrs: XattrPolicy::Always,
            no_xattrs: false.into(),
            exec_cache: None,
            exec_serve: ExecCacheServe::default(),
            exec_files: Mutex::default(),
            exec_read_bytes: Arc::default(),
            opened: Mutex::default(),
            activity: Activity::default(),
        }
    }

    /// The count of reads served (see [`Activity`]).
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Serves programs from `cache` (and fills it through read-ahead).
    pub fn with_exec_cache(
        mut self,
        cache: Option<Arc<ExecCache>>,
        serve: ExecCacheServe,
    ) -> PackageFs {
        self.exec_cache = cache;
        self.exec_serve = serve;
        self
    }

    /// Bytes of reads answered from the exec cache so far (shared counter).
    pub fn exec_read_bytes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.exec_read_bytes.clone()
    }

    /// The exec cache's copy of `entry` of `package` (inode `ino`), when
    /// reads are served from the cache and it holds a verified one.
    fn exec_file(
        &self,
        ino: u64,
        package: &ActivePackage,
        entry: exos_hpkg::EntryId,
    ) -> Option<Arc<std::fs::File>> {
        let cache = self.exec_cache.as_ref()?;
        if self.exec_serve != ExecCacheServe::Reads {
            return None;
        }
        let mut files = self.exec_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = files.get(&ino) {
            return Some(file.clone());
        }
        let digest = package.digests.get()?.get(entry)?;
        let file = Arc::new(cache.get(digest, package.package.entry(entry).size())?);
        // Bounded: forgotten entries are opened again when read.
        if files.len() >= 4096 {
            files.clear();
        }
        files.insert(ino, file.clone());
        Some(file)
    }

    /// Sets how extended attributes are answered.
    pub fn with_xattrs(mut self, policy: XattrPolicy) -> PackageFs {
        self.xattrs = policy;
        self
    }

    /// Under [`XattrPolicy::Auto`], decides (once) whether this mount
    /// serves extended attributes at all.
    fn xattrs_off(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.xattrs == XattrPolicy::Always {
            return false;
        }
        if self.no_xattrs.load(Relaxed) {
            return true;
        }
        let none = !self
            .view()
            .packages
            .iter()
            .any(|p| p.package.toc().has_attributes());
        if none {
            self.no_xattrs.store(true, Relaxed);
        }
        none
    }

    /// Starts the read-ahead thread (see [`crate::readahead`]).
    pub fn with_readahead(mut self) -> PackageFs {
        match ReadAhead::start(self.known.clone(), self.exec_cache.clone()) {
            Ok(r) => self.readahead = Some(Arc::new(r)),
            Err(e) => tracing::warn!("no read-ahead thread: {e}"),
        }
        self
    }

    /// The read-ahead, for giving it the session's notifier.
    pub fn readahead(&self) -> Option<Arc<ReadAhead>> {
        self.readahead.clone()
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.get()
    }

    /// A handle for swapping views while mounted.
    pub fn slot(&self) -> ViewSlot {
        self.view.clone()
    }

    /// Who swaps views must call this with the old and new view, so that
    /// files the kernel still knows stay readable.
    pub fn orphan_keeper(&self) -> OrphanKeeper {
        OrphanKeeper {
            known: self.known.clone(),
            orphans: self.orphans.clone(),
        }
    }

    fn orphan(&self, ino: u64) -> Option<Orphan> {
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .cloned()
    }

    fn attr(view: &View, index: u32) -> FileAttr {
        // A shared inode (hard links) has one set of attributes, whichever
        // path reached it: its canonical node's.
        let index = view.lookup_ino(view.node(index).ino).unwrap_or(index);
        let node = view.node(index);
        let mut attr = FileAttr {
            ino: INodeNo(node.ino),
            size: 0,
            blocks: 0,
            atime: view.settings.epoch,
            mtime: view.settings.epoch,
            ctime: view.settings.epoch,
            crtime: view.settings.epoch,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 1 << 16,
            flags: 0,
        };
        let owner = view.settings.owner;
        (attr.uid, attr.gid) = (owner.uid, owner.gid);
        match node.source {
            Source::Entry { pkg, entry } => {
                let p = &view.packages[pkg as usize];
                entry_attr(&mut attr, view, p, p.package.entry(entry))
            }
            Source::Dir { .. } => {}
            Source::File { .. } => {
                attr.kind = FileType::RegularFile;
                attr.perm = 0o444;
                attr.size = view.data(index).map_or(0, |d| d.len() as u64);
                attr.nlink = 1;
            }
            Source::Host { host } => host_attr(&mut attr, view, &view.host[host as usize]),
        }
        attr.blocks = attr.size.div_ceil(512);
        attr
    }

    /// Generated files change between views: never cache them.
    fn ttl_for(&self, view: &View, index: u32) -> Duration {
        match view.node(index).source {
            Source::File { .. } | Source::Host { .. } => Duration::ZERO,
            _ => self.ttl,
        }
    }

    fn find(&self, ino: INodeNo) -> Option<(Arc<View>, u32)> {
        let view = self.view();
        let index = view.lookup_ino(ino.0)?;
        Some((view, index))
    }

    /// The value of [`PACKAGE_XATTR`] for a package's entry: `NAME
    /// VERSION LAYER /PATH` (the version as people know it, the path in
    /// the package).
    fn owner(view: &View, index: u32) -> Option<String> {
        let Source::Entry { pkg, entry } = view.node(index).source else {
            return None;
        };
        let p = &view.packages[pkg as usize];
        let version = p
            .manifest
            .original_version
            .clone()
            .unwrap_or_else(|| p.manifest.version.to_string());
        Some(format!(
            "{} {version} {} /{}",
            p.manifest.name,
            p.layer,
            p.package.entry(entry).path()
        ))
    }

    /// Answers a getxattr: the size when asked for it, else the bytes.
    fn reply_value(value: &[u8], size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(value.len() as u32)
        } else if value.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(value)
        }
    }

    fn xattrs(view: &View, index: u32) -> Vec<(String, Arc<ActivePackage>, usize)> {
        let Source::Entry { pkg, entry } = view.node(index).source else {
            return Vec::new();
        };
        let p = &view.packages[pkg as usize];
        p.package
            .entry(entry)
            .attributes()
            .enumerate()
            .map(|(i, a)| {
                (
                    format!("{XATTR_PREFIX}{}", escape_attr_name(a.name)),
                    p.clone(),
                    i,
                )
            })
            .collect()
    }
}

impl Filesystem for PackageFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Optional capabilities: the kernel may not offer them all.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_ASYNC_READ,
        ] {
            let _ = config.add_capabilities(flag);
        }
        // Nothing is ever written; a small max_write keeps the kernel's
        // largest request (and io_uring entries' buffers) at max_pages.
        let _ = config.set_max_write(1 << 16);
        // Read ahead as far as the kernel allows: decompression works on
        // 64 KiB chunks, larger requests keep the worker threads busy.
        let mut ra = 1 << 20;
        while config.set_max_readahead(ra).is_err() && ra > 1 << 16 {
            ra /= 2;
        }
        if self.exec_cache.is_some() && self.exec_serve == ExecCacheServe::Passthrough {
            let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            if !passthrough {
                tracing::warn!("the kernel has no FUSE passthrough: exec cache off");
                self.exec_cache = None;
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // Held while the name is resolved and its inode counted: a view
        // swap happens wholly before or after (see OrphanKeeper::swap).
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let Some((view, dir)) = self.find(parent) else {
            return reply.error(Errno::ENOENT);
        };
        match view.lookup(dir, name.as_bytes()) {
            Some(child) => {
                let ttl = self.ttl_for(&view, child);
                known.add(view.node(child).ino);
                drop(known);
                reply.entry(&ttl, &Self::attr(&view, child), Generation(0))
            }
            // A negative entry (inode 0) the kernel may cache: programs
            // probe many names that do not exist (search paths), and a
            // name that appears later is invalidated when the view changes.
            None => {
                let mut attr = Self::attr(&view, dir);
                attr.ino = INodeNo(0);
                reply.entry(&self.ttl, &attr, Generation(0))
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some((view, index)) = self.find(ino) {
            let ttl = self.ttl_for(&view, index);
            return reply.attr(&ttl, &Self::attr(&view, index));
        }
        // A file that left the view, still known to the kernel.
        let _ = fh;
        match self.orphan(ino.0) {
            Some(orphan) => reply.attr(&Duration::ZERO, &orphan_attr(&self.view(), ino, &orphan)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some((view, index)) = self.find(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match view.node(index).source {
            Source::Entry { pkg, entry } => {
                match view.packages[pkg as usize]
                    .package
                    .entry(entry)
                    .symlink_target_bytes()
                {
                    Some(t) => reply.data(t),
                    None => reply.error(Errno::EINVAL),
                }
            }
            Source::Host { host } => match std::fs::read_link(&view.host[host as usize].path) {
                Ok(t) => reply.data(t.as_os_str().as_bytes()),
                Err(_) => reply.error(Errno::EIO),
            },
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Without passthrough: "no open support": the kernel opens
        // without asking from now on, and keeps its page cache across
        // opens. Writes are refused by the read-only mount.
        let Some(cache) = self
            .exec_cache
            .as_ref()
            .filter(|_| self.exec_serve == ExecCacheServe::Passthrough)
        else {
            return reply.error(Errno::ENOSYS);
        };
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        match opened.get_mut(&ino.0) {
            Some(Opened::Passthrough { count, backing, .. }) => {
                *count += 1;
                return reply.opened_passthrough(FileHandle(1), FopenFlags::empty(), backing);
            }
            Some(Opened::Cached(count)) if *count > 0 => {
                *count += 1;
                return reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
            }
            _ => {}
        }
        // A program the cache holds, verified: the kernel reads it directly.
        let found = self.find(ino);
        let entry = found.as_ref().and_then(|(view, node)| {
            let Source::Entry { pkg, entry } = view.node(*node).source else {
                return None;
            };
            let p = &view.packages[pkg as usize];
            let digest = *p.digests.get()?.get(entry)?;
            cache.get(&digest, p.package.entry(entry).size())
        });
        if entry.is_none() {
            if let (Some((view, node)), Some(r)) = (&found, &self.readahead) {
                r.keep_program(view, *node);
            }
        }
        if let Some(file) = entry {
            if let Ok(backing) = reply.open_backing(&file) {
                let backing = Arc::new(backing);
                opened.insert(
                    ino.0,
                    Opened::Passthrough {
                        count: 1,
                        backing: backing.clone(),
                        _entry: file,
                    },
                );
                return reply.opened_passthrough(FileHandle(1), FopenFlags::empty(), &backing);
            }
        }
        opened.insert(ino.0, Opened::Cached(1));
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        let last = match opened.get_mut(&ino.0) {
            Some(Opened::Cached(count)) | Some(Opened::Passthrough { count, .. }) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            None => false,
        };
        if last {
            // The backing file is unregistered when its id drops.
            opened.remove(&ino.0);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Likewise for directories: listings are cached until invalidated.
        reply.error(Errno::ENOSYS)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.activity.touch();
        let view = self.view();
        let node = view.lookup_ino(ino.0);
        let (package, entry) = match node {
            Some(index) => match view.node(index).source {
                Source::Entry { pkg, entry } => (view.packages[pkg as usize].clone(), entry),
                Source::File { .. } => {
                    let d = view.data(index).map_or(&[][..], |d| &d[..]);
                    return reply.data(slice_at(d, offset, size));
                }
                Source::Dir { .. } => return reply.error(Errno::EISDIR),
                Source::Host { host } => {
                    return match read_host(&view.host[host as usize].path, offset, size) {
                        Ok(d) => reply.data(&d),
                        Err(e) => {
                            tracing::warn!(
                                "overlay {}: {e}",
                                view.host[host as usize].path.display()
                            );
                            reply.error(Errno::EIO)
                        }
                    };
                }
            },
            None => match self.orphan(ino.0) {
                Some(Orphan::Entry(package, entry)) => (package, entry),
                Some(Orphan::Data(d)) => return reply.data(slice_at(&d, offset, size)),
                Some(Orphan::Host(h)) => {
                    return match read_host(&h.path, offset, size) {
                        Ok(d) => reply.data(&d),
                        Err(_) => reply.error(Errno::EIO),
                    }
                }
                None => return reply.error(Errno::ENOENT),
            },
        };
        let e = package.package.entry(entry);
        if let Some(readahead) = &self.readahead {
            readahead.before_read(&package, e);
        }
        let len = e.size().saturating_sub(offset).min(size as u64) as usize;
        // A program the exec cache holds is read from there: no
        // decompression (its size and digest match the entry's).
        let cached = self.exec_file(ino.0, &package, entry);
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let read = match &cached {
                Some(file) => {
                    use std::os::unix::fs::FileExt;
                    let read = file.read_exact_at(&mut buf[..len], offset).map(|()| len);
                    if read.is_ok() {
                        self.exec_read_bytes
                            .fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    read.or_else(|err| {
                        tracing::warn!("exec cache entry of {}: {err}", e.path());
                        package.package.read_at(e, offset, &mut buf[..len])
                    })
                }
                None => package.package.read_at(e, offset, &mut buf[..len]),
            };
            match read {
                Ok(n) => {
                    reply.data(&buf[..n]);
                    if let Some(readahead) = &self.readahead {
                        readahead.after_read(&crate::readahead::Served {
                            view: &view,
                            node,
                            package: &package,
                            entry: e,
                            offset,
                            bytes: &buf[..n],
                            from_exec_cache: cached.is_some(),
                        });
                    }
                }
                Err(err) => {
                    tracing::error!("{}: {}: {err}", package.path.display(), e.path());
                    reply.error(Errno::EIO)
                }
            }
        })
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let gone = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ino.0, nlookup);
        if gone {
            self.orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ino.0);
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        // Nothing to flush on a read-only view; ENOSYS makes the kernel
        // stop asking (as it does for open).
        reply.error(Errno::ENOSYS)
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // Not a terminal, nor anything else with ioctls (isatty asks TCGETS).
        reply.error(Errno::ENOTTY)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some((view, dir)) = self.find(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if view.kind(dir) != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let parent_ino = view.node(view.node(dir).parent).ino;
        let kids = view.children(dir);
        for i in offset as usize..kids.len() + 2 {
            let full = match i {
                0 => reply.add(ino, 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(parent_ino), 2, FileType::Directory, ".."),
                _ => {
                    let c = kids[i - 2];
                    let kind = match view.kind(c) {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                        Kind::Symlink => FileType::Symlink,
                    };
                    reply.add(
                        INodeNo(view.node(c).ino),
                        i as u64 + 1,
                        kind,
                        OsStr::from_bytes(view.name(c)),
                    )
                }
            };
            if full {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // As in lookup: the inodes handed out are counted under the same
        // hold as the view they come from.
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let Some((view, dir)) = self.find(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if view.kind(dir) != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let parent = view.node(dir).parent;
        let kids = view.children(dir);
        for i in offset as usize..kids.len() + 2 {
            let (index, name) = match i {
                0 => (dir, OsStr::new(".")),
                1 => (parent, OsStr::new("..")),
                _ => (kids[i - 2], OsStr::from_bytes(view.name(kids[i - 2]))),
            };
            let ttl = self.ttl_for(&view, index);
            let attr = Self::attr(&view, index);
            if reply.add(attr.ino, i as u64 + 1, name, &ttl, &attr, Generation(0)) {
                break;
            }
            if i >= 2 {
                known.add(attr.ino.0);
            }
        }
        drop(known);
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if self.xattrs_off() {
            return reply.error(Errno::ENOSYS);
        }
        let Some((view, index)) = self.find(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(name) = name.to_str() else {
            return reply.error(Errno::NO_XATTR);
        };
        if name == PACKAGE_XATTR {
            return match Self::owner(&view, index) {
                Some(value) => Self::reply_value(value.as_bytes(), size, reply),
                None => reply.error(Errno::NO_XATTR),
            };
        }
        let attrs = Self::xattrs(&view, index);
        let Some((_, package, i)) = attrs.iter().find(|(n, _, _)| n == name) else {
            return reply.error(Errno::NO_XATTR);
        };
        let Source::Entry { entry, .. } = view.node(index).source else {
            return reply.error(Errno::NO_XATTR);
        };
        let e = package.package.entry(entry);
        let Some(attr) = e.attributes().nth(*i) else {
            return reply.error(Errno::NO_XATTR);
        };
        let mut value = attr.type_code.to_le_bytes().to_vec();
        match package.package.read_attribute(&attr) {
            Ok(data) => value.extend_from_slice(&data),
            Err(err) => {
                tracing::error!("{}: {}: {err}", package.path.display(), e.path());
                return reply.error(Errno::EIO);
            }
        }
        Self::reply_value(&value, size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.xattrs_off() {
            return reply.error(Errno::ENOSYS);
        }
        let Some((view, index)) = self.find(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let mut list = Vec::new();
        if Self::owner(&view, index).is_some() {
            list.extend_from_slice(PACKAGE_XATTR.as_bytes());
            list.push(0);
        }
        for (name, _, _) in Self::xattrs(&view, index) {
            list.extend_from_slice(name.as_bytes());
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32)
        } else if list.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&list)
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let view = self.view();
        let bytes: u64 = view.packages.iter().map(|p| p.identity.size).sum();
        reply.statfs(
            bytes.div_ceil(4096),
            0,
            0,
            view.node_count() as u64,
            0,
            4096,
            255,
            4096,
        )
    }
}

/// Fills in what an entry of package `pkg` says about itself: kind, size,
/// permissions (filtered by the view's privileges), owner, times.
fn entry_attr(attr: &mut FileAttr, view: &View, pkg: &ActivePackage, e: exos_hpkg::Entry<'_>) {
    let (owner, perm) = view.owner_and_permissions(pkg, e.permissions());
    attr.perm = perm;
    attr.uid = owner.uid;
    attr.gid = owner.gid;
    attr.mtime = time(e.mtime());
    attr.ctime = attr.mtime;
    attr.atime = time(e.atime());
    attr.crtime = time(e.crtime());
    match e.kind() {
        exos_hpkg::EntryKind::Directory => {
            attr.kind = FileType::Directory;
            attr.nlink = 2;
        }
        exos_hpkg::EntryKind::File => {
            attr.kind = FileType::RegularFile;
            attr.size = e.size();
            attr.nlink = 1;
        }
        exos_hpkg::EntryKind::Symlink => {
            attr.kind = FileType::Symlink;
            attr.size = e.symlink_target_bytes().map_or(0, |t| t.len() as u64);
            attr.nlink = 1;
        }
    }
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Attributes of a runtime overlay's node, from the host file as it is
/// now: its size, times and permission bits (never setuid, setgid or
/// sticky), owned like the files of the layer it covers.
/// `size` bytes of `d` from `offset` (fewer at its end).
fn slice_at(d: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(d.len());
    let end = start.saturating_add(size as usize).min(d.len());
    &d[start..end]
}

/// The attributes of a file that left the view: as it was, but no longer
/// linked (nlink 0), never cached.
fn orphan_attr(view: &View, ino: INodeNo, orphan: &Orphan) -> FileAttr {
    let mut attr = FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: view.settings.epoch,
        mtime: view.settings.epoch,
        ctime: view.settings.epoch,
        crtime: view.settings.epoch,
        kind: FileType::RegularFile,
        perm: 0o444,
        nlink: 0,
        uid: view.settings.owner.uid,
        gid: view.settings.owner.gid,
        rdev: 0,
        blksize: 1 << 16,
        flags: 0,
    };
    match orphan {
        Orphan::Entry(package, entry) => {
            (attr.atime, attr.mtime, attr.ctime, attr.crtime) =
                (UNIX_EPOCH, UNIX_EPOCH, UNIX_EPOCH, UNIX_EPOCH);
            entry_attr(&mut attr, view, package, package.package.entry(*entry));
        }
        Orphan::Data(d) => attr.size = d.len() as u64,
        Orphan::Host(h) => host_attr(&mut attr, view, h),
    }
    attr.nlink = 0;
    attr.blocks = attr.size.div_ceil(512);
    attr
}

fn host_attr(attr: &mut FileAttr, view: &View, h: &crate::view::HostNode) {
    use std::os::unix::fs::MetadataExt;
    let owner = *view.owners.get(h.layer);
    (attr.uid, attr.gid) = (owner.uid, owner.gid);
    attr.kind = match h.kind {
        crate::view::Kind::Dir => FileType::Directory,
        crate::view::Kind::File => FileType::RegularFile,
        crate::view::Kind::Symlink => FileType::Symlink,
    };
    attr.nlink = if h.kind == crate::view::Kind::Dir {
        2
    } else {
        1
    };
    if let Ok(m) = std::fs::symlink_metadata(&h.path) {
        attr.perm = (m.mode() & 0o777) as u16;
        attr.size = if h.kind == crate::view::Kind::Dir {
            0
        } else {
            m.size()
        };
        let t = |s: i64, ns: i64| {
            std::time::UNIX_EPOCH
                + Duration::from_secs(s.max(0) as u64)
                + Duration::from_nanos(ns.clamp(0, 999_999_999) as u64)
        };
        attr.mtime = t(m.mtime(), m.mtime_nsec());
        attr.ctime = t(m.ctime(), m.ctime_nsec());
        attr.atime = attr.mtime;
        attr.crtime = attr.mtime;
    } else {
        attr.perm = 0;
    }
}

/// Reads an overlay file (never through a symlink in its last component).
fn read_host(path: &std::path::Path, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let mut buf = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match f.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_forget_does_not_erase_a_fresh_lookup() {
        let mut k = Known::default();
        k.add(7);
        k.add(7);
        // The kernel forgets its two old references; a third LOOKUP of the
        // same inode was answered on another thread before this FORGET ran.
        k.add(7);
        assert!(!k.forget(7, 2));
        assert_eq!(k.inodes().collect::<Vec<_>>(), [7]);
        assert!(k.forget(7, 1));
        assert_eq!(k.inodes().count(), 0);
        // FORGET before the LOOKUP it races with: known again afterwards.
        k.add(8);
        assert!(k.forget(8, 1));
        k.add(8);
        assert_eq!(k.inodes().collect::<Vec<_>>(), [8]);
        // Forgetting more than was counted never underflows.
        assert!(k.forget(8, 5));
        assert!(k.forget(9, 1));
    }

    #[test]
    fn times_past_time_t_are_clamped_not_panicking() {
        for secs in [0, 1 << 62, 1 << 63, u64::MAX] {
            let t = time(Timestamp {
                secs,
                nanos: 999_999_999,
            });
            assert!(t >= UNIX_EPOCH);
        }
    }
}
