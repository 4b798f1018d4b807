//! Random access to the heap: the logical byte string cut into 64 KiB chunks,
//! each compressed on its own.
//!
//! Only the chunk-size table is loaded up front (two bytes per chunk). A read
//! decompresses just the chunks it touches; raw (incompressible) chunks and
//! uncompressed heaps are read straight from the file with `pread`. A small
//! LRU cache keeps recently decompressed chunks so that sequential reads of a
//! file do not decompress the same chunk twice.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use crate::budget::Budget;
use crate::error::{corrupt, Result};
use crate::header::{Compression, HeapInfo, CHUNK_SIZE};
use crate::source::Source;

/// A decompressed chunk, shared between the cache and readers.
pub type Chunk = Arc<Vec<u8>>;

/// Default number of decompressed chunks kept per open file (4 MiB).
pub const DEFAULT_CACHE_CHUNKS: usize = 64;

/// A chunk cache shared by many heaps (e.g. every package of a mounted
/// view), bounded as a whole. `owner` tells the heaps apart.
pub trait SharedChunkCache: Send + Sync {
    /// The chunk `index` of heap `owner`, if cached.
    fn get(&self, owner: u64, index: u64) -> Option<Chunk>;
    /// Whether it is cached.
    fn contains(&self, owner: u64, index: u64) -> bool;
    /// Caches it.
    fn insert(&self, owner: u64, index: u64, chunk: Chunk);
    /// The cached chunk, or `load`'s result, cached. Implementations may
    /// make concurrent callers for the same chunk wait for one `load`.
    fn get_or_load(
        &self,
        owner: u64,
        index: u64,
        load: &mut dyn FnMut() -> Result<Chunk>,
    ) -> Result<Chunk> {
        if let Some(c) = self.get(owner, index) {
            return Ok(c);
        }
        let c = load()?;
        self.insert(owner, index, c.clone());
        Ok(c)
    }
}

/// Reads the heap of one open HPKG/HPKR file.
pub struct HeapReader {
    file: Arc<dyn Source>,
    info: HeapInfo,
    /// File offset of chunk `i` is `chunk_offsets[i]`; the last element is
    /// the end of the last chunk's payload. Empty for uncompressed heaps.
    chunk_offsets: Vec<u64>,
    cache: Mutex<ChunkCache>,
    shared: std::sync::OnceLock<(Arc<dyn SharedChunkCache>, u64)>,
}

impl std::fmt::Debug for HeapReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapReader")
            .field("info", &self.info)
            .field("chunks", &self.chunk_count())
            .finish()
    }
}

impl HeapReader {
    /// Loads and validates the chunk-size table (charged to `budget`).
    pub fn new(file: Arc<dyn Source>, info: HeapInfo, budget: &Budget) -> Result<Self> {
        let chunk_offsets = if info.compression == Compression::None || info.size_uncompressed == 0
        {
            Vec::new()
        } else {
            load_chunk_table(file.as_ref(), &info, budget)?
        };
        Ok(HeapReader {
            file,
            info,
            chunk_offsets,
            cache: Mutex::new(ChunkCache::new(DEFAULT_CACHE_CHUNKS)),
            shared: std::sync::OnceLock::new(),
        })
    }

    /// The heap's geometry.
    pub fn info(&self) -> &HeapInfo {
        &self.info
    }

    /// The file it reads.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.file
    }

    /// Length of the logical heap.
    pub fn len(&self) -> u64 {
        self.info.size_uncompressed
    }

    /// Whether the heap is empty.
    pub fn is_empty(&self) -> bool {
        self.info.size_uncompressed == 0
    }

    /// Chunks in the heap.
    pub fn chunk_count(&self) -> u64 {
        self.info.size_uncompressed.div_ceil(CHUNK_SIZE as u64)
    }

    /// Sets how many decompressed chunks this reader keeps (0 disables the cache).
    pub fn set_cache_capacity(&self, chunks: usize) {
        let mut c = self.cache.lock().unwrap();
        c.capacity = chunks;
        c.shrink();
    }

    /// Keeps decompressed chunks in `cache` (under `owner`) instead of this
    /// reader's own small LRU, which is then emptied. Can be set once.
    pub fn use_shared_cache(&self, cache: Arc<dyn SharedChunkCache>, owner: u64) {
        if self.shared.set((cache, owner)).is_ok() {
            self.set_cache_capacity(0);
        }
    }

    /// Where in the file the stored bytes of heap offset `offset` begin
    /// (the start of its chunk when compressed).
    pub fn file_offset_of(&self, offset: u64) -> u64 {
        if self.chunk_offsets.is_empty() {
            return self.info.offset + offset.min(self.info.size_uncompressed);
        }
        let i = (offset / CHUNK_SIZE as u64).min(self.chunk_count().saturating_sub(1));
        self.chunk_offsets[i as usize]
    }

    /// The file range holding the stored (compressed) bytes of heap range
    /// `offset..offset + len`: whole chunks.
    pub fn stored_range(&self, offset: u64, len: u64) -> (u64, u64) {
        let start = self.file_offset_of(offset);
        if self.chunk_offsets.is_empty() {
            return (
                start,
                start
                    + len
                        .min(self.info.size_uncompressed - offset.min(self.info.size_uncompressed)),
            );
        }
        let last = (offset.saturating_add(len.max(1)) - 1) / CHUNK_SIZE as u64;
        let last = last.min(self.chunk_count().saturating_sub(1));
        (start, self.chunk_offsets[last as usize + 1])
    }

    /// File offsets where the stored chunks begin, then where the last one
    /// ends: the boundaries an encrypted envelope aligns its units to (see
    /// [`crate::crypt`]), so loading a chunk decrypts exactly its bytes.
    pub fn chunk_file_boundaries(&self) -> Vec<u64> {
        if !self.chunk_offsets.is_empty() {
            return self.chunk_offsets.clone();
        }
        let end = self.info.offset + self.info.size_uncompressed;
        (0..=self.chunk_count())
            .map(|i| (self.info.offset + i * CHUNK_SIZE as u64).min(end))
            .collect()
    }

    /// Whether chunk `i` is decompressed and cached already (or needs no
    /// decompression).
    pub fn is_cached(&self, i: u64) -> bool {
        if i >= self.chunk_count() || self.chunk_is_raw(i) {
            return true;
        }
        match self.shared.get() {
            Some((cache, owner)) => cache.contains(*owner, i),
            None => self.cache.lock().unwrap().entries.iter().any(|e| e.0 == i),
        }
    }

    /// Uncompressed size of chunk `i`.
    fn chunk_len(&self, i: u64) -> usize {
        let start = i * CHUNK_SIZE as u64;
        (self.info.size_uncompressed - start).min(CHUNK_SIZE as u64) as usize
    }

    /// Stored (possibly compressed) size and file offset of chunk `i`.
    fn chunk_location(&self, i: u64) -> (u64, usize) {
        let a = self.chunk_offsets[i as usize];
        let b = self.chunk_offsets[i as usize + 1];
        (a, (b - a) as usize)
    }

    /// True when chunk `i` is stored without compression.
    fn chunk_is_raw(&self, i: u64) -> bool {
        self.chunk_offsets.is_empty() || self.chunk_location(i).1 == self.chunk_len(i)
    }

    /// Chunk `i` as the file stores it, and whether it is stored raw
    /// (uncompressed). What a delta needs to reproduce the file exactly.
    pub fn stored_chunk(&self, i: u64) -> Result<(Vec<u8>, bool)> {
        if i >= self.chunk_count() {
            return Err(corrupt!("heap chunk {i} out of range"));
        }
        let raw = self.chunk_is_raw(i);
        let (off, len) = if self.chunk_offsets.is_empty() {
            (self.info.offset + i * CHUNK_SIZE as u64, self.chunk_len(i))
        } else {
            self.chunk_location(i)
        };
        let mut out = vec![0u8; len];
        self.file.read_exact_at(&mut out, off)?;
        Ok((out, raw))
    }

    /// Returns chunk `i` decompressed, from the cache when possible.
    pub fn chunk(&self, i: u64) -> Result<Chunk> {
        if i >= self.chunk_count() {
            return Err(corrupt!("heap chunk {i} out of range"));
        }
        if let Some((cache, owner)) = self.shared.get() {
            return cache.get_or_load(*owner, i, &mut || self.load_chunk(i));
        }
        if let Some(c) = self.cache.lock().unwrap().get(i) {
            return Ok(c);
        }
        let chunk = self.load_chunk(i)?;
        self.cache.lock().unwrap().put(i, chunk.clone());
        Ok(chunk)
    }

    /// Fills `buf` with heap bytes at `offset` without touching the caches,
    /// keeping the last chunk decompressed in `last` (a reader going
    /// through the heap in order decompresses each chunk once and leaves
    /// the shared cache to the mount's readers).
    pub fn read_exact_at_uncached(
        &self,
        offset: u64,
        buf: &mut [u8],
        last: &mut Option<(u64, Chunk)>,
    ) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.info.size_uncompressed)
            .ok_or_else(|| corrupt!("heap range {offset}+{} is outside the heap", buf.len()))?;
        if self.chunk_offsets.is_empty() {
            self.file.read_exact_at(buf, self.info.offset + offset)?;
            return Ok(());
        }
        let cs = CHUNK_SIZE as u64;
        let (mut pos, mut filled) = (offset, 0usize);
        while pos < end {
            let i = pos / cs;
            let in_chunk = (pos % cs) as usize;
            let n = ((end - pos) as usize).min(self.chunk_len(i) - in_chunk);
            if last.as_ref().is_none_or(|(j, _)| *j != i) {
                *last = Some((i, self.load_chunk(i)?));
            }
            if let Some((_, c)) = last {
                buf[filled..filled + n].copy_from_slice(&c[in_chunk..in_chunk + n]);
            }
            pos += n as u64;
            filled += n;
        }
        Ok(())
    }

    /// Reads and decompresses chunk `i` (no cache).
    fn load_chunk(&self, i: u64) -> Result<Chunk> {
        let len = self.chunk_len(i);
        let mut out = Vec::with_capacity(len);
        if self.chunk_is_raw(i) {
            out.resize(len, 0);
            let off = if self.chunk_offsets.is_empty() {
                self.info.offset + i * CHUNK_SIZE as u64
            } else {
                self.chunk_offsets[i as usize]
            };
            self.file.read_exact_at(&mut out, off)?;
        } else {
            let (off, stored) = self.chunk_location(i);
            let mut input = vec![0u8; stored];
            self.file.read_exact_at(&mut input, off)?;
            decompress_chunk(self.info.compression, &input, len, &mut out)
                .map_err(|e| corrupt!("heap chunk {i}: {e}"))?;
        }
        Ok(Arc::new(out))
    }

    /// Decompresses every chunk once (without caching) on rayon's pool;
    /// the first failure is returned with its chunk index.
    pub fn verify(&self) -> std::result::Result<(), (u64, crate::Error)> {
        use rayon::prelude::*;
        if self.chunk_offsets.is_empty() {
            return Ok(());
        }
        // The first bad chunk in heap order, whichever thread finds it;
        // later chunks are skipped once one is found.
        match (0..self.chunk_count())
            .into_par_iter()
            .find_map_first(|i| self.load_chunk(i).err().map(|e| (i, e)))
        {
            Some(bad) => Err(bad),
            None => Ok(()),
        }
    }

    /// Fills `buf` with heap bytes starting at `offset`.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.info.size_uncompressed)
            .ok_or_else(|| {
                corrupt!(
                    "heap range {offset}+{} is outside the {}-byte heap",
                    buf.len(),
                    self.info.size_uncompressed
                )
            })?;
        if buf.is_empty() {
            return Ok(());
        }
        if self.chunk_offsets.is_empty() {
            self.file.read_exact_at(buf, self.info.offset + offset)?;
            return Ok(());
        }
        let cs = CHUNK_SIZE as u64;
        let mut pos = offset;
        let mut filled = 0usize;
        while pos < end {
            let i = pos / cs;
            let in_chunk = (pos % cs) as usize;
            let n = ((end - pos) as usize).min(self.chunk_len(i) - in_chunk);
            let dst = &mut buf[filled..filled + n];
            if self.chunk_is_raw(i) {
                self.file
                    .read_exact_at(dst, self.chunk_offsets[i as usize] + in_chunk as u64)?;
            } else {
                let c = self.chunk(i)?;
                dst.copy_from_slice(&c[in_chunk..in_chunk + n]);
            }
            pos += n as u64;
            filled += n;
        }
        Ok(())
    }

    /// Reads `len` heap bytes at `offset` into a new vector. Callers bound
    /// `len` (section caps, entry sizes checked against the heap).
    pub fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        if offset
            .checked_add(len)
            .is_none_or(|e| e > self.info.size_uncompressed)
        {
            return Err(corrupt!(
                "heap range {offset}+{len} is outside the {}-byte heap",
                self.info.size_uncompressed
            ));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact_at(offset, &mut v)?;
        Ok(v)
    }
}

/// Reads the trailing chunk-size table and turns it into file offsets,
/// checking every size is plausible before anything is allocated from it.
fn load_chunk_table(file: &dyn Source, info: &HeapInfo, budget: &Budget) -> Result<Vec<u64>> {
    let n = info.size_uncompressed.div_ceil(CHUNK_SIZE as u64);
    let table_len = 2 * (n - 1);
    if table_len > info.size_compressed {
        return Err(corrupt!(
            "chunk table of {n} chunks ({table_len} bytes) does not fit in the {}-byte compressed heap",
            info.size_compressed
        ));
    }
    // The raw table, then 8 bytes per chunk for the offsets.
    budget.charge(table_len + 8 * (n + 1), "chunk table")?;
    let payload = info.size_compressed - table_len;
    let mut raw = vec![0u8; table_len as usize];
    file.read_exact_at(&mut raw, info.offset + payload)?;
    let mut offsets = Vec::with_capacity(n as usize + 1);
    let mut pos = info.offset;
    offsets.push(pos);
    for pair in raw.chunks_exact(2) {
        pos += u16::from_be_bytes([pair[0], pair[1]]) as u64 + 1;
        offsets.push(pos);
    }
    let used = pos - info.offset;
    if used >= payload {
        return Err(corrupt!(
            "chunk table sizes ({used} bytes) leave no room for the last chunk in {payload} bytes"
        ));
    }
    let last_stored = payload - used;
    let last_len = info.size_uncompressed - (n - 1) * CHUNK_SIZE as u64;
    if last_stored > last_len {
        return Err(corrupt!(
            "last heap chunk is stored in {last_stored} bytes, more than its {last_len} uncompressed bytes"
        ));
    }
    offsets.push(pos + last_stored);
    Ok(offsets)
}

thread_local! {
    // libdeflate: chunks are whole buffers of known size, its best case
    // (about twice zlib-rs's inflate speed, measured).
    static ZLIB: RefCell<libdeflater::Decompressor> = RefCell::new(libdeflater::Decompressor::new());
    static ZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses one chunk into `out` (empty, with capacity), requiring the
/// output to be exactly `len` bytes: a chunk that would inflate further is a
/// decompression bomb or corruption, and is rejected without allocating more.
pub(crate) fn decompress_chunk(
    compression: Compression,
    input: &[u8],
    len: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    out.clear();
    out.reserve_exact(len);
    match compression {
        Compression::None => return Err("compressed chunk in an uncompressed heap".into()),
        Compression::Zlib => ZLIB.with(|d| {
            // The output buffer is exactly the chunk's size: a stream that
            // would inflate further fails with "insufficient space".
            out.resize(len, 0);
            let n = d
                .borrow_mut()
                .zlib_decompress(input, out)
                .map_err(|e| match e {
                    libdeflater::DecompressionError::InsufficientSpace => {
                        format!("zlib stream does not end within the chunk's {len} bytes")
                    }
                    libdeflater::DecompressionError::BadData => "zlib: corrupt data".to_string(),
                })?;
            out.truncate(n);
            Ok::<(), String>(())
        })?,
        Compression::Zstd => ZSTD.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
            }
            d.as_mut()
                .unwrap()
                .decompress_to_buffer(input, out)
                .map_err(|e| format!("zstd: {e}"))?;
            Ok::<(), String>(())
        })?,
    }
    if out.len() != len {
        return Err(format!(
            "decompressed to {} bytes, expected {len}",
            out.len()
        ));
    }
    Ok(())
}

/// A tiny LRU of decompressed chunks; linear scan is fine at this size.
struct ChunkCache {
    capacity: usize,
    tick: u64,
    entries: Vec<(u64, u64, Chunk)>,
}

impl ChunkCache {
    fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity,
            tick: 0,
            entries: Vec::new(),
        }
    }

    fn get(&mut self, index: u64) -> Option<Chunk> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.iter_mut().find(|e| e.0 == index).map(|e| {
            e.1 = tick;
            e.2.clone()
        })
    }

    fn put(&mut self, index: u64, chunk: Chunk) {
        if self.capacity == 0 || self.entries.iter().any(|e| e.0 == index) {
            return;
        }
        self.tick += 1;
        if self.entries.len() >= self.capacity {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].1)
                .unwrap();
            self.entries.swap_remove(oldest);
        }
        self.entries.push((index, self.tick, chunk));
    }

    fn shrink(&mut self) {
        while self.entries.len() > self.capacity {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].1)
                .unwrap();
            self.entries.swap_remove(oldest);
        }
    }
}
