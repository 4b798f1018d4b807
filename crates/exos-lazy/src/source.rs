//! [`RemoteSource`]: a package file read through verified blocks.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use exos_repo::{BlockMap, Location, Timeouts, Transport};
use serde::Serialize;

use crate::cache::BlockCache;
use crate::record::LazyPackage;

/// Blocks fetched by the first request of a reader that jumped (256 KiB
/// with 64 KiB blocks: a program's first page faults pull their
/// neighbours too).
pub const FIRST_WINDOW: u64 = 4;
/// Largest request (8 MiB with 64 KiB blocks): a sequential reader's
/// window doubles up to it, so a whole package streams at the link's
/// speed with one round trip per 8 MiB.
pub const MAX_WINDOW: u64 = 128;
/// Verified blocks kept in memory (the page cache holds them too; this
/// spares a read of the cache file for neighbouring reads).
const RECENT: usize = 32;

/// What one lazily opened package has cost so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    pub blocks: u64,
    pub blocks_cached: u64,
    pub requests: u64,
    pub bytes_fetched: u64,
    /// The last failure (network, or a block that did not verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Flight {
    /// Blocks some thread is fetching now.
    inflight: HashSet<u64>,
    /// Where the last fetch ended, and the window it used.
    next: u64,
    window: u64,
}

/// A lazily installed package as an [`exos_hpkg::Source`].
pub struct RemoteSource {
    package: LazyPackage,
    transport: Transport,
    cache: Arc<BlockCache>,
    recent: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
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
    pub fn new(
        package: LazyPackage,
        cache: Arc<BlockCache>,
        timeouts: Timeouts,
    ) -> Result<RemoteSource, exos_repo::RepoError> {
        let location = Location::parse(&package.record.base)?;
        Ok(RemoteSource {
            transport: Transport::new(location, timeouts),
            package,
            cache,
            recent: Mutex::new(VecDeque::new()),
            flight: Mutex::new(Flight::default()),
            landed: Condvar::new(),
            requests: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

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

    /// Block `i`, verified: from memory, the cache, or the network.
    fn block(&self, i: u64) -> io::Result<Arc<Vec<u8>>> {
        loop {
            if let Some(d) = self.local(i) {
                return Ok(d);
            }
            let run = {
                let mut f = self.flight.lock().unwrap();
                if f.inflight.contains(&i) {
                    // Someone fetches it: wait, then look again.
                    drop(self.landed.wait(f).unwrap());
                    continue;
                }
                f.window = if i == f.next && f.window > 0 {
                    (f.window * 2).min(MAX_WINDOW)
                } else {
                    FIRST_WINDOW
                };
                let mut end = i + 1;
                let last = self.map().block_count();
                while end < last
                    && end - i < f.window
                    && !f.inflight.contains(&end)
                    && !self.is_local(end)
                {
                    end += 1;
                }
                f.next = end;
                for b in i..end {
                    f.inflight.insert(b);
                }
                i..end
            };
            let result = self.fetch(run.clone());
            {
                let mut f = self.flight.lock().unwrap();
                for b in run.clone() {
                    f.inflight.remove(&b);
                }
            }
            self.landed.notify_all();
            let first = result?;
            return Ok(first);
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
        if let Err(e) = self
            .transport
            .fetch_range(&self.package.record.file, start, &mut buf)
        {
            return Err(self.fail(e.to_string()));
        }
        self.bytes_fetched
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
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

    /// Fetches every block not cached yet (largest requests), so the
    /// package works offline; `progress` gets the bytes fetched so far.
    pub fn fetch_all(&self, progress: &dyn Fn(u64)) -> io::Result<()> {
        let n = self.map().block_count();
        let mut i = 0;
        while i < n {
            if self.is_local(i) {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < n && end - i < MAX_WINDOW && !self.is_local(end) {
                end += 1;
            }
            self.fetch(i..end)?;
            progress(self.bytes_fetched.load(Ordering::Relaxed));
            i = end;
        }
        Ok(())
    }
}

impl exos_hpkg::Source for RemoteSource {
    fn len(&self) -> io::Result<u64> {
        Ok(self.map().file_size())
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
        let bs = self.map().block_size() as u64;
        let mut pos = offset;
        let mut filled = 0usize;
        while pos < end {
            let i = pos / bs;
            let data = self.block(i)?;
            let in_block = (pos - i * bs) as usize;
            let n = ((end - pos) as usize).min(data.len() - in_block);
            buf[filled..filled + n].copy_from_slice(&data[in_block..in_block + n]);
            pos += n as u64;
            filled += n;
        }
        Ok(())
    }
}
