//! Read-ahead beyond what the kernel does by itself, on one background
//! thread.
//!
//! * **Chunks.** When a read continues where the previous read of a
//!   package ended, the next chunks are decompressed into the cache, so
//!   decompression overlaps with the reader's round trips.
//! * **Files.** The kernel reads ahead inside a file, never across files:
//!   a program reading many small files in a row (`cat` over a tree, a
//!   compiler over headers, a backup) pays one request to this process per
//!   file. When reads arrive for files that follow each other in walk order
//!   (depth first, names sorted: the order packages store files in and
//!   `find | sort` lists them), the files after the one just read are
//!   stored into the kernel's page cache with `FUSE_NOTIFY_STORE`, a window
//!   at a time, so the reader finds them cached and sends no request. Only
//!   files whose inode the kernel holds (looked up or listed) and that are
//!   small (at most [`MAX_PUSHED_FILE`]) are pushed; a reader jumping
//!   around triggers nothing.
//! * **Programs.** A program or library starts with its ELF header being
//!   read, then the file is mapped and faulted in page by page, each fault
//!   a round trip. At the header read the file's stored bytes are asked
//!   from the disk in one go (`POSIX_FADV_WILLNEED`, in `fs`); when a read
//!   past the start comes with it (before or after: the kernel sends a
//!   small program's reads at once), the whole file (up to [`MAX_PUSHED_PROGRAM`])
//!   is stored at once: its last megabyte first when the read jumped
//!   (a loader: its relocations land there), its first megabyte first when
//!   the read continued the header read (a copy). A tool that only reads
//!   headers (`file`) costs a
//!   disk read-ahead, no decompression. A program the exec cache holds is
//!   stored at its header read, from the cache.
//!
//! Pushing is safe because an inode number always stands for the same
//! bytes (see `view`): a pushed page can never be stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

use exos_hpkg::header::CHUNK_SIZE;
use exos_hpkg::{Compression, EntryKind};
use fuser::{INodeNo, Notifier};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::activate::ActivePackage;
use crate::exec_cache::ExecCache;
use crate::known::Known;
use crate::view::{Kind, Source, View};

/// Chunks decompressed ahead of a sequential reader. Four measured best on
/// two cores (see BENCHMARKS.md).
const CHUNK_DEPTH: u64 = 4;
/// Files larger than this are left to the kernel's own read-ahead, which
/// asks for up to 1 MiB per request.
pub const MAX_PUSHED_FILE: u64 = 128 << 10;
/// Programs and libraries larger than this are left to page faults.
pub const MAX_PUSHED_PROGRAM: u64 = 32 << 20;
/// One push stores at most this many bytes…
const WINDOW_BYTES: u64 = 1 << 20;
/// …and this many files.
const WINDOW_FILES: usize = 256;
/// Header reads and early later reads remembered for pairing (forgotten
/// all at once beyond that: a pairing lost costs only speed).
const REMEMBERED_READS: usize = 1024;
/// A read counts as sequential when its file is one of the next this many
/// files after a file read before (or after the end of a push).
const NEAR: usize = 2;
/// Nodes expected next, kept at most (then forgotten and relearnt).
const EXPECTED: usize = 1 << 13;
/// Pushed nodes remembered (per view) so a window is not pushed twice.
const REMEMBERED: usize = 1 << 16;

enum Job {
    Chunk(Arc<ActivePackage>, u64),
    /// Keep `node` in the exec cache if it is a program or library.
    Cache {
        view: Arc<View>,
        node: u32,
    },
    /// All of program or library `node`.
    Whole {
        view: Arc<View>,
        node: u32,
        order: StoreOrder,
    },
    /// The window of files after `after`.
    Push {
        view: Arc<View>,
        after: u32,
    },
}

/// Which end of a program is stored into the page cache first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreOrder {
    /// A reader going through the file from its start (`cat`, `cp`): it
    /// finds the pages ahead of it stored.
    FromStart,
    /// A loader: it relocates first, touching the data segment at the end
    /// of the file, then runs code from the middle.
    FromEnd,
}

impl StoreOrder {
    /// The order for a program whose header read ended at `header_end`
    /// and which was then read at `offset`.
    fn after(header_end: u64, offset: u64) -> StoreOrder {
        if offset == header_end {
            StoreOrder::FromStart
        } else {
            StoreOrder::FromEnd
        }
    }
}

/// Where sequential readers are heading, per view: the files right after
/// each file read and after each push. Several readers going through
/// different parts of a tree at once each keep their own streak.
#[derive(Default)]
struct Scan {
    /// Identity of the view the nodes belong to.
    view: usize,
    expected: FxHashSet<u32>,
}

impl Scan {
    fn for_view(&mut self, view: usize) -> &mut Self {
        if self.view != view || self.expected.len() > EXPECTED {
            self.view = view;
            self.expected.clear();
        }
        self
    }

    /// Expects the [`NEAR`] files after `node`.
    fn expect_after(&mut self, view: &View, node: u32) {
        let mut at = node;
        for _ in 0..NEAR {
            match next_file(view, at) {
                Some(next) => {
                    self.expected.insert(next);
                    at = next;
                }
                None => break,
            }
        }
    }
}

/// A read the FUSE handler answered, as read-ahead sees it.
pub struct Served<'a> {
    /// The view it was answered from.
    pub view: &'a Arc<View>,
    /// Its node in the view (`None`: a file of a package that left it).
    pub node: Option<u32>,
    /// The package the file is in.
    pub package: &'a Arc<ActivePackage>,
    /// The file's entry.
    pub entry: exos_hpkg::Entry<'a>,
    /// Where the read started in the file.
    pub offset: u64,
    /// What was answered.
    pub bytes: &'a [u8],
    /// Answered from the exec cache (no decompression).
    pub from_exec_cache: bool,
}

/// Counters for tests and logs.
#[derive(Default)]
pub struct PushStats {
    /// Files stored into the page cache.
    pub files: AtomicU64,
    /// Bytes stored into the page cache.
    pub bytes: AtomicU64,
    /// Windows of files asked for (jobs the worker took on).
    pub windows: AtomicU64,
    /// Windows not asked for because the worker's queue was full.
    pub windows_dropped: AtomicU64,
    /// Files of a window left out because the kernel did not hold their
    /// inode (it would refuse the store).
    pub not_held: AtomicU64,
    /// Stores the kernel refused.
    pub store_failed: AtomicU64,
}

/// A copy of [`PushStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    /// Files stored.
    pub files: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Windows asked for.
    pub windows: u64,
    /// Windows dropped (queue full).
    pub windows_dropped: u64,
    /// Files left out: inode not held.
    pub not_held: u64,
    /// Stores the kernel refused.
    pub store_failed: u64,
}

impl PushStats {
    /// The counters now.
    pub fn counts(&self) -> PushCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PushCounts {
            files: get(&self.files),
            bytes: get(&self.bytes),
            windows: get(&self.windows),
            windows_dropped: get(&self.windows_dropped),
            not_held: get(&self.not_held),
            store_failed: get(&self.store_failed),
        }
    }
}

/// The read-ahead thread and what the request handlers tell it.
pub struct ReadAhead {
    jobs: SyncSender<Job>,
    scan: Arc<Mutex<Scan>>,
    /// Header reads of programs and later reads, paired (see
    /// [`ReadAhead::after_program_header`]).
    pairs: Mutex<ReadPairs>,
    notifier: Arc<OnceLock<Notifier>>,
    /// What it has done.
    pub stats: Arc<PushStats>,
}

impl ReadAhead {
    /// Starts the thread. Files are pushed only once a notifier is set
    /// (the session exists), see [`ReadAhead::set_notifier`].
    pub fn start(
        known: Arc<Mutex<Known>>,
        exec_cache: Option<Arc<ExecCache>>,
    ) -> std::io::Result<ReadAhead> {
        let (jobs, rx) = sync_channel::<Job>(16);
        let scan = Arc::new(Mutex::new(Scan::default()));
        let notifier = Arc::new(OnceLock::new());
        let stats = Arc::new(PushStats::default());
        let worker = Worker {
            known,
            scan: scan.clone(),
            notifier: notifier.clone(),
            stats: stats.clone(),
            pushed: FxHashSet::default(),
            pushed_view: 0,
            buf: Vec::new(),
            exec_cache,
            exec_checked: FxHashSet::default(),
        };
        std::thread::Builder::new()
            .name("exos-readahead".into())
            .spawn(move || worker.run(rx))?;
        Ok(ReadAhead {
            jobs,
            scan,
            pairs: Mutex::default(),
            notifier,
            stats,
        })
    }

    /// Lets the thread store pages (once the session has a notifier).
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Before a read of `entry`: a package fetched on demand is asked for
    /// the whole file at its first read (one request instead of one per
    /// read the kernel makes).
    pub fn before_read(&self, package: &ActivePackage, entry: exos_hpkg::Entry<'_>) {
        if package.package.fetched_on_demand() {
            package.package.will_read(entry);
        }
    }

    /// After a read of a package's file was answered: what to read ahead
    /// of the reader (the policy of the module documentation).
    pub fn after_read(&self, s: &Served<'_>) {
        let n = s.bytes.len() as u64;
        if let (exos_hpkg::DataRef::Heap { offset: start, .. }, false) =
            (s.entry.data(), s.from_exec_cache)
        {
            self.after_heap_read(s.package, start + s.offset, start + s.offset + n);
        }
        let Some(node) = s.node else {
            return;
        };
        if s.offset != 0 {
            self.after_later_read(s.view, node, s.offset);
            return;
        }
        self.after_file_read(s.view, node);
        let program = s.bytes.starts_with(b"\x7fELF");
        let size = s.entry.size();
        if program && size == n && !s.from_exec_cache {
            self.keep_program(s.view, node);
        }
        if !program || size <= n {
            return;
        }
        // A program whose header was read: the loader maps it next and
        // faults it in a page at a time.
        if s.from_exec_cache {
            // Store it whole now: it ran before (that is how it got
            // there), and it costs no decompression.
            self.push_program(s.view, node);
            return;
        }
        // Start reading its stored bytes from disk now, in one go, instead
        // of one request per fault.
        if !s.package.package.fetched_on_demand() && size <= MAX_PUSHED_PROGRAM {
            s.package.package.will_read(s.entry);
        }
        self.after_program_header(s.view, node, n);
    }

    /// After a read of heap bytes `[start, end)` of `package`: if it
    /// continues where the previous read of this package ended, queue the
    /// next chunks for decompression. Random access gains nothing from
    /// read-ahead; it does not waste a core.
    fn after_heap_read(&self, package: &Arc<ActivePackage>, start: u64, end: u64) {
        const CHUNK: u64 = CHUNK_SIZE as u64;
        let heap = package.package.heap();
        if heap.info().compression == Compression::None || end == 0 {
            return;
        }
        let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
        let previous = package.last_chunk_read.swap(last, Ordering::Relaxed);
        if first != previous && first != previous.wrapping_add(1) {
            return;
        }
        for next in last + 1..last + 1 + CHUNK_DEPTH {
            if next < heap.chunk_count() && !heap.is_cached(next) {
                let _ = self.jobs.try_send(Job::Chunk(package.clone(), next));
            }
        }
    }

    /// Keeps `node` in the exec cache if it is a program or library (on
    /// this thread, later): called when a file is opened under passthrough,
    /// and when a program is read whole at once (too small for
    /// [`ReadAhead::after_later_read`] to see it mapped).
    pub fn keep_program(&self, view: &Arc<View>, node: u32) {
        let _ = self.jobs.try_send(Job::Cache {
            view: view.clone(),
            node,
        });
    }

    /// After the header of program or library `node` was read. A loader
    /// maps the file next and faults its pages in one round trip at a time;
    /// a tool like `file` stops here. Which one it was shows at the next
    /// read ([`ReadAhead::after_later_read`]).
    fn after_program_header(&self, view: &Arc<View>, node: u32, end: u64) {
        let paired = self.pairs().header(node, end);
        if let Some(order) = paired {
            self.queue_whole(view, node, order);
        }
    }

    /// After a read at `offset` past the start of `node`: a program or
    /// library whose header was just read is being mapped and run (or
    /// copied, when the read continues where the header read ended); the
    /// whole file is stored at once instead of page by page.
    fn after_later_read(&self, view: &Arc<View>, node: u32, offset: u64) {
        let paired = self.pairs().later(node, offset);
        if let Some(order) = paired {
            self.queue_whole(view, node, order);
        }
    }

    fn pairs(&self) -> std::sync::MutexGuard<'_, ReadPairs> {
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues program `node` to be stored whole.
    fn queue_whole(&self, view: &Arc<View>, node: u32, order: StoreOrder) {
        if self.notifier.get().is_some() {
            let _ = self.jobs.try_send(Job::Whole {
                view: view.clone(),
                node,
                order,
            });
        }
    }

    /// Stores all of program or library `node` now, without waiting for a
    /// read past its header: for programs the exec cache holds, which were
    /// run before (pushing one costs no decompression).
    fn push_program(&self, view: &Arc<View>, node: u32) {
        if self.notifier.get().is_some() {
            let _ = self.jobs.try_send(Job::Whole {
                view: view.clone(),
                node,
                order: StoreOrder::FromEnd,
            });
        }
    }

    /// After a read from the start of file `node`: push the files after it
    /// if the reader is going through files in walk order.
    fn after_file_read(&self, view: &Arc<View>, node: u32) {
        if self.notifier.get().is_none() {
            return;
        }
        let id = Arc::as_ptr(view) as usize;
        let mut scan = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        let scan = scan.for_view(id);
        let pushed = scan.expected.remove(&node) && {
            let sent = self
                .jobs
                .try_send(Job::Push {
                    view: view.clone(),
                    after: node,
                })
                .is_ok();
            if !sent {
                self.stats.windows_dropped.fetch_add(1, Ordering::Relaxed);
            }
            sent
        };
        if !pushed {
            // The push, when done, expects what follows its window.
            scan.expect_after(view, node);
        }
    }
}

/// Pairs a program's header read with a read past it, in either order:
/// the kernel sends a small program's reads at once and their answers reach
/// [`ReadAhead::after_read`] on several threads, so the later read may be
/// seen first. A pairing forgotten (beyond [`REMEMBERED_READS`]) costs
/// only speed.
#[derive(Default)]
struct ReadPairs {
    /// node → where its header read ended.
    headers: FxHashMap<u32, u64>,
    /// node → where a read past the start began, no header read seen yet.
    early: FxHashMap<u32, u64>,
}

impl ReadPairs {
    /// A header read of `node` ended at `end`: the order to store the
    /// program in if a later read was seen already.
    fn header(&mut self, node: u32, end: u64) -> Option<StoreOrder> {
        if let Some(offset) = self.early.remove(&node) {
            return Some(StoreOrder::after(end, offset));
        }
        remember(&mut self.headers, node, end);
        None
    }

    /// A read of `node` began at `offset` past its start: the order to
    /// store the program in if its header read was seen.
    fn later(&mut self, node: u32, offset: u64) -> Option<StoreOrder> {
        match self.headers.remove(&node) {
            Some(end) => Some(StoreOrder::after(end, offset)),
            None => {
                if !self.early.contains_key(&node) {
                    remember(&mut self.early, node, offset);
                }
                None
            }
        }
    }
}

fn remember(map: &mut FxHashMap<u32, u64>, node: u32, at: u64) {
    if map.len() >= REMEMBERED_READS {
        map.clear();
    }
    map.insert(node, at);
}

/// The next file (not directory or symlink) after `node` in walk order,
/// within a few steps.
fn next_file(view: &View, node: u32) -> Option<u32> {
    let mut at = node;
    for _ in 0..16 {
        at = view.next_in_walk(at)?;
        if view.kind(at) == Kind::File {
            return Some(at);
        }
    }
    None
}

struct Worker {
    known: Arc<Mutex<Known>>,
    scan: Arc<Mutex<Scan>>,
    notifier: Arc<OnceLock<Notifier>>,
    stats: Arc<PushStats>,
    /// Nodes already pushed, for the view `pushed_view`.
    pushed: FxHashSet<u32>,
    pushed_view: usize,
    buf: Vec<u8>,
    /// Where programs pushed whole are kept for later starts.
    exec_cache: Option<Arc<ExecCache>>,
    /// Contents already looked at for the exec cache (kept or not a
    /// program): every open of a file need not be looked at again.
    exec_checked: FxHashSet<[u8; 16]>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Chunk(package, chunk) => {
                    let _ = package.package.heap().chunk(chunk);
                }
                Job::Push { view, after } => self.push(&view, after),
                Job::Whole { view, node, order } => self.push_whole(&view, node, order),
                Job::Cache { view, node } => self.cache_program(&view, node),
            }
        }
    }

    /// Pushes the window of files after `after` into the page cache.
    fn push(&mut self, view: &Arc<View>, after: u32) {
        if self.notifier.get().is_none() {
            return;
        }
        self.stats.windows.fetch_add(1, Ordering::Relaxed);
        let id = Arc::as_ptr(view) as usize;
        if self.pushed_view != id || self.pushed.len() > REMEMBERED {
            self.pushed.clear();
            self.pushed_view = id;
        }
        let (mut bytes, mut files, mut walked) = (0u64, 0usize, 0usize);
        let mut at = after;
        while let Some(next) = view.next_in_walk(at) {
            at = next;
            walked += 1;
            if walked > 4 * WINDOW_FILES {
                break;
            }
            if self.pushed.contains(&at) {
                continue;
            }
            let Some(size) = self.push_file(view, at) else {
                continue;
            };
            self.pushed.insert(at);
            bytes += size;
            files += 1;
            if bytes >= WINDOW_BYTES || files >= WINDOW_FILES {
                break;
            }
        }
        self.stats.files.fetch_add(files as u64, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut scan = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        if scan.view == id {
            scan.expect_after(view, at);
        }
    }

    /// Stores small file `node` into the kernel's page cache if the kernel
    /// holds its inode; returns its size if it did.
    fn push_file(&mut self, view: &View, node: u32) -> Option<u64> {
        let notifier = self.notifier.get()?;
        let n = view.node(node);
        let Source::Entry { pkg, entry } = n.source else {
            return None;
        };
        let package = &view.packages[pkg as usize];
        // Not over the network on a guess (bench/lazy.sh: no faster).
        if package.package.fetched_on_demand() {
            return None;
        }
        let e = package.package.entry(entry);
        let size = e.size();
        if e.kind() != EntryKind::File || size == 0 || size > MAX_PUSHED_FILE {
            return None;
        }
        if !self.kernel_holds(n.ino) {
            self.stats.not_held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.buf.resize(size as usize, 0);
        // A read of a broken file reports its error; nothing to push.
        let read = package.package.read_at(e, 0, &mut self.buf).ok()?;
        if read as u64 != size {
            return None;
        }
        if let Err(err) = notifier.store(INodeNo(n.ino), 0, &self.buf) {
            tracing::debug!("read-ahead: the kernel refused a store: {err}");
            self.stats.store_failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(size)
    }

    fn push_whole(&mut self, view: &View, node: u32, order: StoreOrder) {
        const PIECE: u64 = 1 << 20;
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        let n = view.node(node);
        let Source::Entry { pkg, entry } = n.source else {
            return;
        };
        let package = &view.packages[pkg as usize];
        // A lazy package's file is fetched whole at its first read anyway
        // (`Package::will_read`); storing it too only costs bandwidth.
        if package.package.fetched_on_demand() {
            return;
        }
        let e = package.package.entry(entry);
        if e.kind() != EntryKind::File || e.size() > MAX_PUSHED_PROGRAM {
            return;
        }
        // A program the exec cache does not hold yet is kept whole for it
        // (never one of a sealed package: the cache is plain files).
        let to_cache = self.exec_cache.as_ref().and_then(|cache| {
            if package.package.sealed_with().is_some() {
                return None;
            }
            let digest = *package.digests.get()?.get(entry)?;
            (!cache.contains(&digest, e.size())).then_some((cache.clone(), digest))
        });
        // For a loader, last piece first: measured against first piece
        // first (bench/startup.sh): python 24.1 → 22.3 ms, git 7.8 → 6.8 ms.
        let count = e.size().div_ceil(PIECE);
        let pieces = (0..count).map(|i| match order {
            StoreOrder::FromStart => i * PIECE,
            StoreOrder::FromEnd => (count - 1 - i) * PIECE,
        });
        // A copy in the exec cache is read instead of decompressing.
        let cached = self.exec_cache.as_ref().and_then(|cache| {
            let digest = package.digests.get()?.get(entry)?;
            cache.get(digest, e.size())
        });
        let mut whole = match to_cache {
            Some(_) => vec![0u8; e.size() as usize],
            None => Vec::new(),
        };
        let mut storing = true;
        for at in pieces {
            let len = PIECE.min(e.size() - at) as usize;
            self.buf.resize(len, 0);
            let read = match &cached {
                Some(file) => {
                    use std::os::unix::fs::FileExt;
                    file.read_exact_at(&mut self.buf, at).is_ok()
                }
                None => matches!(package.package.read_at(e, at, &mut self.buf), Ok(n) if n == len),
            };
            if !read {
                return;
            }
            // A refused store (the kernel dropped the inode meanwhile) ends
            // the pushing, not the keeping: the exec cache still gets it.
            if storing && notifier.store(INodeNo(n.ino), at, &self.buf).is_err() {
                self.stats.store_failed.fetch_add(1, Ordering::Relaxed);
                if to_cache.is_none() {
                    return;
                }
                storing = false;
            }
            if to_cache.is_some() {
                whole[at as usize..at as usize + len].copy_from_slice(&self.buf);
            }
        }
        if storing {
            self.stats.files.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(e.size(), Ordering::Relaxed);
        }
        if let Some((cache, digest)) = to_cache {
            if let Err(err) = cache.put(&digest, &whole) {
                tracing::warn!("exec cache {}: {err}", cache.dir().display());
            }
        }
    }

    /// Decompresses `node` whole into the exec cache when it is an ELF
    /// file (of at most [`MAX_PUSHED_PROGRAM`]) the cache does not hold.
    fn cache_program(&mut self, view: &View, node: u32) {
        let Some(cache) = self.exec_cache.clone() else {
            return;
        };
        let Source::Entry { pkg, entry } = view.node(node).source else {
            return;
        };
        let package = &view.packages[pkg as usize];
        if package.package.sealed_with().is_some() {
            return; // the exec cache holds plain files: never a sealed package's
        }
        let e = package.package.entry(entry);
        let Some(digest) = package.digests.get().and_then(|d| d.get(entry)).copied() else {
            return;
        };
        if self.exec_checked.len() > REMEMBERED {
            self.exec_checked.clear();
        }
        if !self.exec_checked.insert(digest) {
            return;
        }
        if e.kind() != EntryKind::File
            || e.size() < 4
            || e.size() > MAX_PUSHED_PROGRAM
            || cache.contains(&digest, e.size())
        {
            return;
        }
        let mut magic = [0u8; 4];
        if !matches!(package.package.read_at(e, 0, &mut magic), Ok(4)) || &magic != b"\x7fELF" {
            return;
        }
        let mut whole = vec![0u8; e.size() as usize];
        if !matches!(package.package.read_at(e, 0, &mut whole), Ok(n) if n == whole.len()) {
            return;
        }
        if let Err(err) = cache.put(&digest, &whole) {
            tracing::warn!("exec cache {}: {err}", cache.dir().display());
        }
    }

    fn kernel_holds(&self, ino: u64) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holds(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_read_pairs_with_a_later_read_in_either_order() {
        let mut pairs = ReadPairs::default();
        // A loader: header, then a jump.
        assert_eq!(pairs.header(1, 832), None);
        assert_eq!(pairs.later(1, 20_480), Some(StoreOrder::FromEnd));
        // The same reads answered the other way round.
        assert_eq!(pairs.later(2, 20_480), None);
        assert_eq!(pairs.header(2, 832), Some(StoreOrder::FromEnd));
        // A copy: the later read continues the header read.
        assert_eq!(pairs.later(3, 4096), None);
        assert_eq!(pairs.header(3, 4096), Some(StoreOrder::FromStart));
        // Each pairing is used once; a header alone (`file`) pairs nothing.
        assert_eq!(pairs.header(4, 832), None);
        assert_eq!(pairs.later(1, 40_960), None);
        assert!(pairs.headers.contains_key(&4) && pairs.headers.len() == 1);
        // The first early read is the one paired.
        assert_eq!(pairs.later(5, 8192), None);
        assert_eq!(pairs.later(5, 832), None);
        assert_eq!(pairs.header(5, 832), Some(StoreOrder::FromEnd));
    }

    #[test]
    fn remembered_reads_stay_bounded() {
        let mut pairs = ReadPairs::default();
        for node in 0..10 * REMEMBERED_READS as u32 {
            pairs.later(node, 4096);
            pairs.header(node + 1_000_000, 64);
        }
        assert!(pairs.early.len() <= REMEMBERED_READS);
        assert!(pairs.headers.len() <= REMEMBERED_READS);
    }
}
