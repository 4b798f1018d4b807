//! [`RemoteSource`]: a package file read through verified blocks.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use exos_repo::{BlockMap, Location, Timeouts, Transport};
use serde::Serialize;

use crate::cache::BlockCache;
use crate::record::LazyPackage;

/// Bytes a sequential reader's first request fetches beyond what it reads;
/// each further sequential request doubles it, up to [`MAX_WINDOW`]. A
/// reader that jumps fetches only the blocks it reads.
pub const FIRST_WINDOW: u64 = 128 << 10;
/// Largest request: a whole package streams at the link's speed with one
/// round trip per 8 MiB.
pub const MAX_WINDOW: u64 = 8 << 20;
/// Verified blocks kept in memory (the page cache holds them too; this
/// spares a read of the cache file for neighbouring reads).
const RECENT: usize = 32;

/// What one lazily opened package has cost so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    /// Blocks in the package.
    pub blocks: u64,
    /// Of them, blocks in the block cache now.
    pub blocks_cached: u64,
    /// HTTP requests (or reads of a local repository) made.
    pub requests: u64,
    /// Bytes fetched.
    pub bytes_fetched: u64,
    /// The last failure (network, or a block that did not verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One reader going forward through the file (the kernel's read-ahead,
/// a program being mapped, a `cat`).
#[derive(Clone, Copy)]
struct Stream {
    /// The block after its last read.
    next: u64,
    /// Blocks fetched (or being fetched) ahead of it up to here.
    ahead: u64,
    /// Blocks the next read-ahead fetches.
    window: u64,
    /// Reads that continued it.
    hits: u32,
}

/// Streams followed at once per package.
const STREAMS: usize = 8;

impl Stream {
    /// Whether a read starting at block `first` continues this stream:
    /// anywhere from a little behind its end to what is fetched ahead (the
    /// kernel sends a reader's reads from several threads, not always in
    /// order).
    fn continued_by(&self, first: u64, slack: u64) -> bool {
        first + slack >= self.next && first <= self.ahead
    }
}

#[derive(Default)]
struct Flight {
    /// Blocks some thread is fetching now.
    inflight: HashSet<u64>,
    /// Recent streams, most recent last.
    streams: Vec<Stream>,
    /// Read-ahead fetches running in the background.
    background: usize,
}

/// One HTTP client per repository location for the whole process: every
/// package of a repository then reuses the same kept-alive connections
/// (a new connection costs a round trip before its first byte).
fn shared_transport(location: Location, timeouts: Timeouts) -> Arc<Transport> {
    type Key = (String, std::time::Duration, std::time::Duration);
    static ALL: std::sync::OnceLock<Mutex<std::collections::HashMap<Key, Arc<Transport>>>> =
        std::sync::OnceLock::new();
    let key = (location.describe(""), timeouts.connect, timeouts.response);
    ALL.get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key)
        .or_insert_with(|| Arc::new(Transport::new(location, timeouts)))
        .clone()
}

/// A lazily installed package as an [`exos_hpkg::Source`].
pub struct RemoteSource {
    /// Itself, for read-ahead threads.
    me: std::sync::Weak<RemoteSource>,
    package: LazyPackage,
    transport: Arc<Transport>,
    cache: Arc<BlockCache>,
    recent: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
    /// Whether reads are followed for read-ahead ([`RemoteSource::follow_readers`]).
    following: std::sync::atomic::AtomicBool,
    /// First blocks of files fetched whole already ([`RemoteSource::will_need`]).
    complete: Mutex<HashSet<u64>>,
    flight: Mutex<Flight>,
    landed: Condvar,
    requests: AtomicU64,
    bytes_fetched: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource")
            .field("file", &self.package.record.file)
            .field("base", &self.package.record.base)
            .finish()
    }
}

impl RemoteSource {
    /// A source reading `package` through `cache`, fetching missing blocks from the record's repository.
    pub fn new(
        package: LazyPackage,
        cache: Arc<BlockCache>,
        timeouts: Timeouts,
    ) -> Result<Arc<RemoteSource>, crate::LazyError> {
        let location = Location::parse(&package.record.base)?;
        Ok(Arc::new_cyclic(|me| RemoteSource {
            me: me.clone(),
            transport: shared_transport(location, timeouts),
            package,
            cache,
            recent: Mutex::new(VecDeque::new()),
            complete: Mutex::new(HashSet::new()),
            following: std::sync::atomic::AtomicBool::new(false),
            flight: Mutex::new(Flight::default()),
            landed: Condvar::new(),
            requests: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }))
    }

    /// The package this source reads.
    pub fn package(&self) -> &LazyPackage {
        &self.package
    }

    /// The URL blocks are fetched from.
    pub fn url(&self) -> String {
        self.transport.location.describe(&self.package.record.file)
    }

    fn map(&self) -> &BlockMap {
        &self.package.blocks
    }

    /// What the package has cost so far.
    pub fn stats(&self) -> SourceStats {
        let map = self.map();
        SourceStats {
            blocks: map.block_count(),
            blocks_cached: (0..map.block_count())
                .filter(|&i| map.hash(i).is_some_and(|h| self.cache.contains(h)))
                .count() as u64,
            requests: self.requests.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }

    fn fail(&self, msg: String) -> io::Error {
        tracing::warn!("{msg}");
        *self.last_error.lock().unwrap() = Some(msg.clone());
        io::Error::other(msg)
    }

    fn remember(&self, i: u64, data: Arc<Vec<u8>>) {
        let mut r = self.recent.lock().unwrap();
        if r.iter().any(|(j, _)| *j == i) {
            return;
        }
        if r.len() >= RECENT {
            r.pop_front();
        }
        r.push_back((i, data));
    }

    fn local(&self, i: u64) -> Option<Arc<Vec<u8>>> {
        if let Some((_, d)) = self.recent.lock().unwrap().iter().find(|(j, _)| *j == i) {
            return Some(d.clone());
        }
        let h = self.map().hash(i)?;
        let data = Arc::new(self.cache.get(h)?);
        self.remember(i, data.clone());
        Some(data)
    }

    fn is_local(&self, i: u64) -> bool {
        self.recent.lock().unwrap().iter().any(|(j, _)| *j == i)
            || self.map().hash(i).is_some_and(|h| self.cache.contains(h))
    }

    /// Block `i`, verified: from memory, the cache, or the network (with
    /// the blocks after it up to `last`, which the caller reads next).
    fn block(&self, i: u64, last: u64) -> io::Result<Arc<Vec<u8>>> {
        loop {
            if let Some(d) = self.local(i) {
                return Ok(d);
            }
            match self.claim(i, last + 1) {
                Some(run) => {
                    let result = self.fetch_claimed(run);
                    return result;
                }
                // Someone fetches it: wait, then look again.
                None => {
                    let f = self.flight.lock().unwrap();
                    if f.inflight.contains(&i) {
                        drop(self.landed.wait(f).unwrap());
                    }
                }
            }
        }
    }

    /// Marks as being fetched the run of missing blocks from `i` (up to
    /// `end`, at most [`MAX_WINDOW`]); `None` when `i` is being fetched.
    fn claim(&self, i: u64, end: u64) -> Option<std::ops::Range<u64>> {
        let mut f = self.flight.lock().unwrap();
        if f.inflight.contains(&i) {
            return None;
        }
        let max = MAX_WINDOW / self.map().block_size() as u64;
        let end = end.min(self.map().block_count()).min(i + max).max(i + 1);
        let mut stop = i + 1;
        while stop < end && !f.inflight.contains(&stop) && !self.is_local(stop) {
            stop += 1;
        }
        for b in i..stop {
            f.inflight.insert(b);
        }
        Some(i..stop)
    }

    /// Fetches a claimed run and releases it; returns its first block.
    fn fetch_claimed(&self, run: std::ops::Range<u64>) -> io::Result<Arc<Vec<u8>>> {
        let result = self.fetch(run.clone());
        {
            let mut f = self.flight.lock().unwrap();
            for b in run {
                f.inflight.remove(&b);
            }
        }
        self.landed.notify_all();
        result
    }

    /// Follows readers going forward: a read that continues a stream
    /// (see [`Stream::continued_by`]) grows its window and keeps
    /// that many blocks fetched ahead of it, in the background, so the
    /// network works while the reader does.
    fn after_read(&self, first: u64, last: u64) {
        if !self.following.load(Ordering::Relaxed) {
            return;
        }
        let bs = self.map().block_size() as u64;
        let count = self.map().block_count();
        let slack = FIRST_WINDOW / bs;
        let todo = {
            let mut f = self.flight.lock().unwrap();
            let pos = f.streams.iter().rposition(|s| s.continued_by(first, slack));
            let mut s = match pos {
                Some(p) => f.streams.remove(p),
                None => {
                    if f.streams.len() >= STREAMS {
                        f.streams.remove(0);
                    }
                    Stream {
                        next: last + 1,
                        ahead: last + 1,
                        window: FIRST_WINDOW / bs,
                        hits: 0,
                    }
                }
            };
            let mut todo = None;
            if pos.is_some() {
                s.hits += 1;
                s.next = s.next.max(last + 1);
                s.ahead = s.ahead.max(s.next);
                // From its second read on, with less than half a window
                // left ahead: fetch the next one.
                if s.hits >= 1
                    && s.ahead < count
                    && s.ahead - s.next < s.window.div_ceil(2)
                    && f.background < 2
                {
                    todo = Some(s.ahead..(s.ahead + s.window).min(count));
                    s.ahead = (s.ahead + s.window).min(count);
                    s.window = (s.window * 2).min(MAX_WINDOW / bs);
                    f.background += 1;
                }
            }
            f.streams.push(s);
            todo
        };
        let Some(range) = todo else { return };
        let Some(me) = self.me.upgrade() else { return };
        let spawned = std::thread::Builder::new()
            .name("exos-lazy-ahead".into())
            .spawn(move || {
                let mut i = range.start;
                while i < range.end {
                    if me.is_local(i) {
                        i += 1;
                        continue;
                    }
                    let Some(run) = me.claim(i, range.end) else {
                        i += 1;
                        continue;
                    };
                    i = run.end;
                    if me.fetch_claimed(run).is_err() {
                        break;
                    }
                }
                me.flight.lock().unwrap().background -= 1;
            });
        if spawned.is_err() {
            self.flight.lock().unwrap().background -= 1;
        }
    }

    /// Fetches blocks `run` with one request, verifies and caches each;
    /// returns the first.
    fn fetch(&self, run: std::ops::Range<u64>) -> io::Result<Arc<Vec<u8>>> {
        let map = self.map();
        let (start, _) = map.range(run.start);
        let (_, end) = map.range(run.end - 1);
        let mut buf = vec![0u8; (end - start) as usize];
        self.requests.fetch_add(1, Ordering::Relaxed);
        let began = std::time::Instant::now();
        if let Err(e) = self
            .transport
            .fetch_range(&self.package.record.file, start, &mut buf)
        {
            return Err(self.fail(e.to_string()));
        }
        self.bytes_fetched
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        tracing::debug!(
            "{}: fetched blocks {}..{} ({} bytes) in {:?} on {:?}",
            self.package.record.file,
            run.start,
            run.end,
            buf.len(),
            began.elapsed(),
            std::thread::current().name()
        );
        let mut first = None;
        for b in run {
            let (a, z) = map.range(b);
            let data = &buf[(a - start) as usize..(z - start) as usize];
            if !map.check(b, data) {
                return Err(self.fail(format!(
                    "{}: block {b} (bytes {a}-{}) does not match its SHA-256 in the signed block map (a corrupted or substituted file)",
                    self.url(),
                    z - 1
                )));
            }
            let data = Arc::new(data.to_vec());
            if let Some(h) = map.hash(b) {
                if let Err(e) = self.cache.put(h, &data) {
                    tracing::warn!("{}: block not cached: {e}", self.cache.dir().display());
                }
            }
            self.remember(b, data.clone());
            first.get_or_insert(data);
        }
        first.ok_or_else(|| io::Error::other("empty fetch"))
    }

    /// Starts reading ahead of sequential readers. Off while a package is
    /// opened (its metadata reads are not a reader going forward) and for
    /// installs, which only open packages.
    pub fn follow_readers(&self) {
        self.following.store(true, Ordering::Relaxed);
    }

    /// Fetches what opening the package reads — the header's block and
    /// everything from the recorded metadata offset on — with two
    /// concurrent requests, before it is opened (which would otherwise
    /// read header, chunk table, attributes and TOC one round trip
    /// after another).
    pub fn prefetch_metadata(&self) -> io::Result<()> {
        let n = self.map().block_count();
        let bs = self.map().block_size() as u64;
        let Some(from) = self
            .package
            .record
            .metadata_offset
            .filter(|&o| o < self.map().file_size())
        else {
            return Ok(());
        };
        let tail = (from / bs).max(1);
        std::thread::scope(|s| {
            let head = s.spawn(|| self.fetch_missing(0..1.min(n), &|_| {}));
            let rest = self.fetch_missing(tail..n, &|_| {});
            head.join()
                .unwrap_or_else(|_| Err(io::Error::other("prefetch panicked")))
                .and(rest)
        })
    }

    /// Fetches every block not cached yet (largest requests), so the
    /// package works offline; `progress` gets the bytes fetched so far.
    pub fn fetch_all(&self, progress: &dyn Fn(u64)) -> io::Result<()> {
        self.fetch_missing(0..self.map().block_count(), progress)
    }

    /// Fetches the blocks of `range` not cached yet, in runs.
    fn fetch_missing(&self, range: std::ops::Range<u64>, progress: &dyn Fn(u64)) -> io::Result<()> {
        let n = range.end.min(self.map().block_count());
        let mut i = range.start;
        while i < n {
            if self.is_local(i) {
                i += 1;
                continue;
            }
            let Some(run) = self.claim(i, n) else {
                // Another thread fetches it; `block` waits for it.
                self.block(i, i)?;
                i += 1;
                continue;
            };
            i = run.end;
            self.fetch_claimed(run)?;
            progress(self.bytes_fetched.load(Ordering::Relaxed));
        }
        Ok(())
    }
}

impl exos_hpkg::Source for RemoteSource {
    fn len(&self) -> io::Result<u64> {
        Ok(self.map().file_size())
    }

    fn fetched_on_demand(&self) -> bool {
        true
    }

    /// A file about to be read is fetched whole with one request when any
    /// of it is missing and it is stored in at most [`MAX_WINDOW`]: one
    /// round trip instead of one per read the kernel makes (a program's
    /// page faults, a module's import). Larger files are left to the
    /// streams.
    fn will_need(&self, offset: u64, len: u64) {
        let bs = self.map().block_size() as u64;
        if len == 0 || len > MAX_WINDOW || offset >= self.map().file_size() {
            return;
        }
        let first = offset / bs;
        let mut end = (offset + len).div_ceil(bs).min(self.map().block_count());
        if self.complete.lock().unwrap().contains(&first) {
            return;
        }
        // A file that continues a stream (the next file in the package,
        // as a walk in path order reads them) brings the stream's window
        // along in the same request.
        if let Some(s) = self
            .flight
            .lock()
            .unwrap()
            .streams
            .iter()
            .rev()
            .find(|s| s.continued_by(first, 1) && first <= s.next)
        {
            end = end.max(first + s.window).min(self.map().block_count());
        }
        if self.fetch_missing(first..end, &|_| {}).is_ok() {
            let mut c = self.complete.lock().unwrap();
            if c.len() > 4096 {
                c.clear();
            }
            c.insert(first);
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let size = self.map().file_size();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read past the end of a {size}-byte package"),
                )
            })?;
        if buf.is_empty() {
            return Ok(());
        }
        let bs = self.map().block_size() as u64;
        let last = (end - 1) / bs;
        let mut pos = offset;
        let mut filled = 0usize;
        while pos < end {
            let i = pos / bs;
            let data = self.block(i, last)?;
            let in_block = (pos - i * bs) as usize;
            let n = ((end - pos) as usize).min(data.len() - in_block);
            buf[filled..filled + n].copy_from_slice(&data[in_block..in_block + n]);
            pos += n as u64;
            filled += n;
        }
        self.after_read(offset / bs, last);
        Ok(())
    }
}
