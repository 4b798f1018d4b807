//! Streaming, deterministic package writer.
//!
//! File data is appended to the heap as entries are added and cut into
//! 64 KiB chunks that worker threads compress in parallel; finished chunks
//! are written in order, so at most `2 × threads` chunks are in memory no
//! matter how large the package is. The TOC (one small record per entry) is
//! kept in memory and appended to the heap at the end, followed by the
//! package attributes, the chunk-size table and finally the header.
//!
//! Output follows Haiku's writer: smallest integer encodings, defaults
//! omitted, `reserved1` = 0, a chunk stored raw unless compression makes it
//! strictly smaller (and never compressed below 64 bytes), a chunk table
//! only for compressed heaps. Identical file contents are stored once and
//! referenced by several entries (valid HPKG: data is just a heap range).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::attr::{encode_section, id, WAttr, WValue, MAX_INLINE_DATA};
use crate::error::{Error, Result, ResultExt};
use crate::header::{
    Compression, HeapInfo, PackageHeader, CHUNK_SIZE, FORMAT_VERSION, HPKG_HEADER_SIZE,
    MINOR_VERSION,
};
use crate::info::PackageInfo;
use crate::toc::{check_entry_name, EntryKind, Timestamp};

/// How to build a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// How chunks are compressed.
    pub compression: Compression,
    /// zlib: 1–12 (libdeflate's levels); zstd: 1–22. Ignored for
    /// `Compression::None`.
    pub level: i32,
    /// Compression threads; 0 means one per available core.
    pub threads: usize,
    /// Store identical file contents once.
    pub dedup: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Zlib,
            level: DEFAULT_ZLIB_LEVEL,
            threads: 0,
            dedup: true,
        }
    }
}

/// The zlib level used unless told (the number Haiku's tools use; here
/// libdeflate's level 9, see [`ChunkCoding`]).
pub const DEFAULT_ZLIB_LEVEL: i32 = 9;

/// libdeflate's levels.
const LIBDEFLATE_LEVELS: std::ops::RangeInclusive<i32> = 1..=12;
/// zlib-rs's levels.
const ZLIB_RS_LEVELS: std::ops::RangeInclusive<i32> = 1..=9;
/// zstd's levels.
const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=22;
/// Where libdeflate's levels start among a delta's recompression codes.
const LIBDEFLATE_CODES: i32 = 100;

/// Exactly how heap chunks are compressed: the compressor and its level.
/// A delta must know it to compress a package's chunks again byte for
/// byte.
///
/// zlib chunks are made by libdeflate. Until 2026-12-07 they were made by
/// zlib-rs, and deltas of those packages still reproduce them. On a copy
/// of `/usr/lib/x86_64-linux-gnu`, libdeflate's level 9 compressed 3.6
/// times as fast as zlib-rs's, and 0.8 % smaller (BENCHMARKS.md,
/// "Building packages"). Both write plain zlib streams, which Haiku reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkCoding {
    /// Stored as they are.
    Stored,
    /// zlib streams from libdeflate at this level (1–12): what builds make.
    Libdeflate(i32),
    /// zlib streams from zlib-rs at this level (1–9): what builds made
    /// before libdeflate.
    ZlibRs(i32),
    /// zstd at this level (1–22).
    Zstd(i32),
}

impl ChunkCoding {
    /// What a build with `compression` at `level` makes.
    pub fn of_build(compression: Compression, level: i32) -> ChunkCoding {
        match compression {
            Compression::None => ChunkCoding::Stored,
            Compression::Zlib => ChunkCoding::Libdeflate(level),
            Compression::Zstd => ChunkCoding::Zstd(level),
        }
    }

    /// The compression it makes.
    pub fn compression(self) -> Compression {
        match self {
            ChunkCoding::Stored => Compression::None,
            ChunkCoding::Libdeflate(_) | ChunkCoding::ZlibRs(_) => Compression::Zlib,
            ChunkCoding::Zstd(_) => Compression::Zstd,
        }
    }

    /// Its level (0 when stored).
    pub fn level(self) -> i32 {
        match self {
            ChunkCoding::Stored => 0,
            ChunkCoding::Libdeflate(l) | ChunkCoding::ZlibRs(l) | ChunkCoding::Zstd(l) => l,
        }
    }

    /// Who compresses: `libdeflate`, `zlib-rs`, `zstd` or `none`.
    pub fn compressor(self) -> &'static str {
        match self {
            ChunkCoding::Stored => "none",
            ChunkCoding::Libdeflate(_) => "libdeflate",
            ChunkCoding::ZlibRs(_) => "zlib-rs",
            ChunkCoding::Zstd(_) => "zstd",
        }
    }

    /// The number a delta records: zlib-rs's and zstd's levels as
    /// themselves (what deltas held before libdeflate, so those still
    /// apply), libdeflate's as 100 + level (which an older exos refuses as
    /// out of range instead of compressing differently), 0 when stored.
    pub fn code(self) -> i32 {
        match self {
            ChunkCoding::Libdeflate(l) => LIBDEFLATE_CODES + l,
            other => other.level(),
        }
    }

    /// The coding a delta's number stands for with `compression`; `None`
    /// when it stands for none.
    pub fn from_code(compression: Compression, code: i32) -> Option<ChunkCoding> {
        let coding = match compression {
            Compression::None => return (code == 0).then_some(ChunkCoding::Stored),
            Compression::Zlib if code > LIBDEFLATE_CODES => {
                ChunkCoding::Libdeflate(code - LIBDEFLATE_CODES)
            }
            Compression::Zlib => ChunkCoding::ZlibRs(code),
            Compression::Zstd => ChunkCoding::Zstd(code),
        };
        coding.is_valid().then_some(coding)
    }

    fn is_valid(self) -> bool {
        match self {
            ChunkCoding::Stored => true,
            ChunkCoding::Libdeflate(l) => LIBDEFLATE_LEVELS.contains(&l),
            ChunkCoding::ZlibRs(l) => ZLIB_RS_LEVELS.contains(&l),
            ChunkCoding::Zstd(l) => ZSTD_LEVELS.contains(&l),
        }
    }

    /// Every coding a package with `compression` may have been built with,
    /// the likeliest first: today's default, the default before it, then
    /// the other levels.
    pub fn candidates(compression: Compression) -> Vec<ChunkCoding> {
        let mut out = match compression {
            Compression::None => return vec![ChunkCoding::Stored],
            Compression::Zlib => vec![
                ChunkCoding::Libdeflate(DEFAULT_ZLIB_LEVEL),
                ChunkCoding::ZlibRs(DEFAULT_ZLIB_LEVEL),
            ],
            Compression::Zstd => vec![ChunkCoding::Zstd(DEFAULT_ZSTD_LEVEL)],
        };
        let others: Vec<ChunkCoding> = match compression {
            Compression::Zlib => LIBDEFLATE_LEVELS
                .map(ChunkCoding::Libdeflate)
                .chain(ZLIB_RS_LEVELS.map(ChunkCoding::ZlibRs))
                .collect(),
            _ => ZSTD_LEVELS.map(ChunkCoding::Zstd).collect(),
        };
        for c in others {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

impl std::fmt::Display for ChunkCoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkCoding::Stored => f.write_str("stored"),
            c => write!(f, "{} level {}", c.compressor(), c.level()),
        }
    }
}
/// The zstd level used unless told.
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

impl BuildOptions {
    /// The defaults with this compression (and its default level).
    pub fn with_compression(compression: Compression) -> Self {
        BuildOptions {
            compression,
            level: match compression {
                Compression::Zstd => DEFAULT_ZSTD_LEVEL,
                _ => DEFAULT_ZLIB_LEVEL,
            },
            ..Default::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let ok = match self.compression {
            Compression::None => true,
            Compression::Zlib => LIBDEFLATE_LEVELS.contains(&self.level),
            Compression::Zstd => ZSTD_LEVELS.contains(&self.level),
        };
        if !ok {
            return Err(Error::unsupported(format!(
                "compression level {} is out of range for {}",
                self.level, self.compression
            )));
        }
        Ok(())
    }

    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Figures about a finished build.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildStats {
    /// Entries written.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Sum of all regular files' sizes.
    pub file_bytes: u64,
    /// Bytes not stored again because an identical file was already in the heap.
    pub deduplicated_bytes: u64,
    /// Bytes of the heap uncompressed.
    pub heap_uncompressed: u64,
    /// Chunks of the heap.
    pub chunks: u64,
    /// Chunks stored uncompressed (compression did not pay).
    pub raw_chunks: u64,
    /// The package's size.
    pub package_size: u64,
}

/// Metadata of an entry being added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits; `None` means the kind's default.
    pub permissions: Option<u16>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Defaults to `mtime` when `None` (keeps builds reproducible: a source
    /// tree's atime changes when it is read).
    pub atime: Option<Timestamp>,
    /// Creation time; `mtime` when `None`.
    pub crtime: Option<Timestamp>,
    /// Haiku file attributes: name, type code, bytes.
    pub attributes: Vec<(String, u32, Vec<u8>)>,
}

/// Where a regular file's bytes come from.
pub enum FileData<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A reader yielding exactly `size` bytes; `hash` (BLAKE3 of the
    /// content), when given, lets identical files be stored once.
    Reader {
        /// The reader.
        reader: &'a mut dyn Read,
        /// Bytes it yields.
        size: u64,
        /// BLAKE3 of the content, if known.
        hash: Option<[u8; 32]>,
    },
}

#[derive(Debug, Clone)]
enum NodeData {
    None,
    Inline(Vec<u8>),
    Heap { offset: u64, size: u64 },
}

#[derive(Debug)]
struct Node {
    name: Vec<u8>,
    kind: EntryKind,
    meta: EntryMeta,
    data: NodeData,
    symlink: Vec<u8>,
    attrs: Vec<(String, u32, NodeData)>,
    children: Vec<usize>,
}

/// Builds one package file. Entries are added in order (a directory's
/// children between [`begin_directory`](Self::begin_directory) and
/// [`end_directory`](Self::end_directory)); [`finish`](Self::finish) writes
/// the TOC, attributes and header and atomically renames the result into
/// place. Dropping the builder unfinished removes the temporary file.
pub struct PackageBuilder {
    path: PathBuf,
    tmp_path: PathBuf,
    heap: Option<HeapWriter>,
    nodes: Vec<Node>,
    open_dirs: Vec<usize>,
    dedup: Option<HashMap<[u8; 32], (u64, u64)>>,
    stats: BuildStats,
    copy_buf: Vec<u8>,
}

impl PackageBuilder {
    /// Starts a package at `path` (written to a temporary file beside it first).
    pub fn create(path: impl AsRef<Path>, options: BuildOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        options.validate().at(&path)?;
        let file_name = path
            .file_name()
            .ok_or_else(|| Error::unsupported("output path has no file name").with_path(&path))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp_path = path.with_file_name(tmp_name);
        let mut file = File::create(&tmp_path).at(&tmp_path)?;
        file.write_all(&[0u8; HPKG_HEADER_SIZE]).at(&tmp_path)?;
        let heap = HeapWriter::new(file, options);
        Ok(PackageBuilder {
            path,
            tmp_path,
            heap: Some(heap),
            nodes: vec![Node {
                name: Vec::new(),
                kind: EntryKind::Directory,
                meta: EntryMeta::default(),
                data: NodeData::None,
                symlink: Vec::new(),
                attrs: Vec::new(),
                children: Vec::new(),
            }],
            open_dirs: vec![0],
            dedup: options.dedup.then(HashMap::new),
            stats: BuildStats::default(),
            copy_buf: Vec::new(),
        })
    }

    fn heap(&mut self) -> &mut HeapWriter {
        self.heap.as_mut().expect("builder used after finish")
    }

    fn add_node(&mut self, name: &[u8], kind: EntryKind, meta: EntryMeta) -> Result<usize> {
        check_entry_name(name).map_err(|e| Error::unsupported(e).with_path(&self.path))?;
        let parent = *self.open_dirs.last().unwrap();
        let dup = self.nodes[parent]
            .children
            .iter()
            .any(|&c| self.nodes[c].name == name);
        if dup {
            return Err(Error::unsupported(format!(
                "duplicate entry {:?}",
                String::from_utf8_lossy(name)
            ))
            .with_path(&self.path));
        }
        let mut attrs = Vec::with_capacity(meta.attributes.len());
        for (aname, ty, bytes) in &meta.attributes {
            let data = self.store_blob(bytes)?;
            attrs.push((aname.clone(), *ty, data));
        }
        let idx = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_vec(),
            kind,
            meta: EntryMeta {
                attributes: Vec::new(),
                ..meta
            },
            data: NodeData::None,
            symlink: Vec::new(),
            attrs,
            children: Vec::new(),
        });
        self.nodes[parent].children.push(idx);
        self.stats.entries += 1;
        Ok(idx)
    }

    /// Stores bytes inline if small, otherwise in the heap (deduplicated).
    fn store_blob(&mut self, bytes: &[u8]) -> Result<NodeData> {
        if bytes.len() <= MAX_INLINE_DATA {
            return Ok(NodeData::Inline(bytes.to_vec()));
        }
        let size = bytes.len() as u64;
        if let Some(map) = &self.dedup {
            let hash = *blake3::hash(bytes).as_bytes();
            if let Some(&(offset, s)) = map.get(&hash) {
                self.stats.deduplicated_bytes += size;
                return Ok(NodeData::Heap { offset, size: s });
            }
            let offset = self.heap().write(bytes).at(&self.tmp_path)?;
            self.dedup.as_mut().unwrap().insert(hash, (offset, size));
            return Ok(NodeData::Heap { offset, size });
        }
        let offset = self.heap().write(bytes).at(&self.tmp_path)?;
        Ok(NodeData::Heap { offset, size })
    }

    /// Opens a directory; following entries go into it until `end_directory`.
    /// Names are bytes (any but `/` and NUL, UTF-8 or not), as in Haiku.
    pub fn begin_directory(&mut self, name: impl AsRef<[u8]>, meta: EntryMeta) -> Result<()> {
        if self.open_dirs.len() > crate::attr::MAX_DEPTH {
            return Err(Error::unsupported("directories nested too deeply").with_path(&self.path));
        }
        let idx = self.add_node(name.as_ref(), EntryKind::Directory, meta)?;
        self.open_dirs.push(idx);
        self.stats.directories += 1;
        Ok(())
    }

    /// Ends the directory the last `begin_directory` started.
    pub fn end_directory(&mut self) -> Result<()> {
        if self.open_dirs.len() <= 1 {
            return Err(
                Error::unsupported("end_directory without begin_directory").with_path(&self.path)
            );
        }
        self.open_dirs.pop();
        Ok(())
    }

    /// Adds a symbolic link to the current directory.
    pub fn add_symlink(
        &mut self,
        name: impl AsRef<[u8]>,
        meta: EntryMeta,
        target: impl AsRef<[u8]>,
    ) -> Result<()> {
        let idx = self.add_node(name.as_ref(), EntryKind::Symlink, meta)?;
        self.nodes[idx].symlink = target.as_ref().to_vec();
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Adds a regular file to the current directory.
    pub fn add_file(
        &mut self,
        name: impl AsRef<[u8]>,
        meta: EntryMeta,
        data: FileData<'_>,
    ) -> Result<()> {
        let idx = self.add_node(name.as_ref(), EntryKind::File, meta)?;
        self.stats.files += 1;
        let stored = match data {
            FileData::Bytes(b) => {
                self.stats.file_bytes += b.len() as u64;
                if b.is_empty() {
                    NodeData::None
                } else {
                    self.store_blob(b)?
                }
            }
            FileData::Reader { reader, size, hash } => {
                self.stats.file_bytes += size;
                if size <= MAX_INLINE_DATA as u64 {
                    let mut b = vec![0u8; size as usize];
                    reader.read_exact(&mut b).at(&self.path)?;
                    if b.is_empty() {
                        NodeData::None
                    } else {
                        NodeData::Inline(b)
                    }
                } else if let Some(&(offset, s)) = hash
                    .as_ref()
                    .and_then(|h| self.dedup.as_ref().and_then(|m| m.get(h)))
                {
                    self.stats.deduplicated_bytes += size;
                    NodeData::Heap { offset, size: s }
                } else {
                    let offset = self.copy_into_heap(reader, size)?;
                    if let (Some(h), Some(map)) = (hash, self.dedup.as_mut()) {
                        map.insert(h, (offset, size));
                    }
                    NodeData::Heap { offset, size }
                }
            }
        };
        self.nodes[idx].data = stored;
        Ok(())
    }

    fn copy_into_heap(&mut self, reader: &mut dyn Read, size: u64) -> Result<u64> {
        let mut buf = std::mem::take(&mut self.copy_buf);
        buf.resize(1 << 20, 0);
        let offset = self.heap().position();
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::unsupported(format!(
                        "file shrank while being packaged ({} of {size} bytes read)",
                        size - left
                    ))
                    .with_path(&self.path))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from(e).with_path(&self.path)),
            };
            self.heap().write(&buf[..n]).at(&self.tmp_path)?;
            left -= n as u64;
        }
        self.copy_buf = buf;
        Ok(offset)
    }

    /// Uncompressed bytes written to the heap so far (for progress reporting).
    pub fn heap_position(&self) -> u64 {
        self.heap.as_ref().map_or(0, |h| h.position())
    }

    fn toc_attrs(&self, idx: usize) -> Vec<WAttr> {
        self.nodes[idx]
            .children
            .iter()
            .map(|&c| {
                let n = &self.nodes[c];
                let mut kids = Vec::new();
                if n.kind != EntryKind::File {
                    let t = if n.kind == EntryKind::Directory { 1 } else { 2 };
                    kids.push(WAttr::uint(id::FILE_TYPE, t));
                }
                if let Some(p) = n.meta.permissions {
                    if p != n.kind.default_permissions() {
                        kids.push(WAttr::uint(id::FILE_PERMISSIONS, p as u64));
                    }
                }
                let mtime = n.meta.mtime;
                let atime = n.meta.atime.unwrap_or(mtime);
                let crtime = n.meta.crtime.unwrap_or(mtime);
                kids.push(WAttr::uint(id::FILE_ATIME, atime.secs));
                kids.push(WAttr::uint(id::FILE_MTIME, mtime.secs));
                kids.push(WAttr::uint(id::FILE_CRTIME, crtime.secs));
                for (aid, t) in [
                    (id::FILE_ATIME_NANOS, atime),
                    (id::FILE_MTIME_NANOS, mtime),
                    (id::FILE_CRTIME_NANOS, crtime),
                ] {
                    if t.nanos != 0 {
                        kids.push(WAttr::uint(aid, t.nanos as u64));
                    }
                }
                if let Some(v) = data_value(&n.data) {
                    kids.push(WAttr::new(id::DATA, v));
                }
                if n.kind == EntryKind::Symlink {
                    kids.push(WAttr::string(id::SYMLINK_PATH, &n.symlink));
                }
                for (name, ty, data) in &n.attrs {
                    let mut akids = vec![WAttr::uint(id::FILE_ATTRIBUTE_TYPE, *ty as u64)];
                    if let Some(v) = data_value(data) {
                        akids.push(WAttr::new(id::DATA, v));
                    }
                    kids.push(WAttr::string(id::FILE_ATTRIBUTE, name).with_children(akids));
                }
                kids.extend(self.toc_attrs(c));
                WAttr::string(id::DIRECTORY_ENTRY, &n.name).with_children(kids)
            })
            .collect()
    }

    /// Writes TOC, package attributes, chunk table and header, syncs, and
    /// renames the package into place.
    pub fn finish(mut self, info: &PackageInfo) -> Result<BuildStats> {
        if self.open_dirs.len() != 1 {
            return Err(Error::unsupported("unclosed directory at finish").with_path(&self.path));
        }
        let toc = encode_section(&self.toc_attrs(0));
        let attrs = encode_section(&info.to_attrs());
        let mut heap = self.heap.take().unwrap();
        heap.write(&toc.bytes).at(&self.tmp_path)?;
        heap.write(&attrs.bytes).at(&self.tmp_path)?;
        let finished = heap.finish().at(&self.tmp_path)?;
        let total = HPKG_HEADER_SIZE as u64 + finished.size_compressed;
        let header = PackageHeader {
            header_size: HPKG_HEADER_SIZE as u16,
            version: FORMAT_VERSION,
            total_size: total,
            minor_version: MINOR_VERSION,
            heap: HeapInfo {
                offset: HPKG_HEADER_SIZE as u64,
                compression: finished.compression,
                size_compressed: finished.size_compressed,
                size_uncompressed: finished.size_uncompressed,
            },
            attributes_length: u32::try_from(attrs.bytes.len()).map_err(|_| {
                Error::unsupported("package attributes too large").with_path(&self.path)
            })?,
            attributes_strings_length: attrs.strings_length as u32,
            attributes_strings_count: attrs.strings_count as u32,
            toc_length: toc.bytes.len() as u64,
            toc_strings_length: toc.strings_length,
            toc_strings_count: toc.strings_count,
        };
        let mut file = finished.file;
        use std::os::unix::fs::FileExt;
        file.write_all_at(&header.to_bytes(), 0)
            .at(&self.tmp_path)?;
        file.flush().at(&self.tmp_path)?;
        file.sync_all().at(&self.tmp_path)?;
        drop(file);
        fs::rename(&self.tmp_path, &self.path).at(&self.path)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let mut stats = std::mem::take(&mut self.stats);
        stats.heap_uncompressed = finished.size_uncompressed;
        stats.chunks = finished.chunks;
        stats.raw_chunks = finished.raw_chunks;
        stats.package_size = total;
        Ok(stats)
    }
}

impl Drop for PackageBuilder {
    fn drop(&mut self) {
        if self.heap.is_some() {
            // Unfinished: stop the workers, then remove the partial file.
            self.heap = None;
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

fn data_value(d: &NodeData) -> Option<WValue> {
    match d {
        NodeData::None => None,
        NodeData::Inline(b) => Some(WValue::Inline(b.clone())),
        NodeData::Heap { offset, size } => Some(WValue::Heap {
            offset: *offset,
            size: *size,
        }),
    }
}

// ---------------------------------------------------------------------------
// Heap writer: ordered parallel chunk compression.

struct Job {
    seq: u64,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    /// Uncompressed input, returned so its buffer can be reused.
    input: Vec<u8>,
    /// Compressed bytes, or `None` when the chunk is stored raw.
    compressed: Option<Vec<u8>>,
}

pub(crate) struct FinishedHeap {
    pub file: File,
    pub compression: Compression,
    pub size_compressed: u64,
    pub size_uncompressed: u64,
    pub chunks: u64,
    pub raw_chunks: u64,
}

/// Appends bytes to a heap, compressing full chunks on worker threads.
///
/// A hand-made pipeline rather than rayon: chunks arrive one at a time
/// while the caller streams files in, must be written back in order, and
/// at most 2 × threads may be in memory at once (a bounded channel gives
/// the back-pressure). rayon's parallel iterators want the whole input up
/// front and its `spawn` has no bound, so either would hold the package in
/// memory or reorder it.
pub(crate) struct HeapWriter {
    file: Option<io::BufWriter<File>>,
    compression: Compression,
    coding: ChunkCoding,
    current: Vec<u8>,
    /// Uncompressed bytes accepted so far.
    position: u64,
    /// Stored bytes written to the file so far.
    written: u64,
    stored_sizes: Vec<u16>,
    raw_chunks: u64,
    next_seq: u64,
    next_to_write: u64,
    pending: BTreeMap<u64, Done>,
    in_flight: usize,
    max_in_flight: usize,
    jobs: Option<mpsc::SyncSender<Job>>,
    results: Option<mpsc::Receiver<Done>>,
    workers: Vec<thread::JoinHandle<()>>,
    spare: Vec<Vec<u8>>,
}

impl HeapWriter {
    pub(crate) fn new(file: File, options: BuildOptions) -> Self {
        let threads = options.thread_count();
        let mut w = HeapWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            compression: options.compression,
            coding: ChunkCoding::of_build(options.compression, options.level),
            current: Vec::with_capacity(CHUNK_SIZE as usize),
            position: 0,
            written: 0,
            stored_sizes: Vec::new(),
            raw_chunks: 0,
            next_seq: 0,
            next_to_write: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            jobs: None,
            results: None,
            workers: Vec::new(),
            spare: Vec::new(),
        };
        if options.compression != Compression::None && threads > 1 {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            let job_rx = Arc::new(Mutex::new(job_rx));
            for _ in 0..threads {
                let rx = job_rx.clone();
                let tx = done_tx.clone();
                let coding = w.coding;
                w.workers.push(thread::spawn(move || {
                    let mut c = ChunkCompressor::new(coding);
                    loop {
                        let job = match rx.lock().unwrap().recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        let compressed = c.compress(&job.data);
                        if tx
                            .send(Done {
                                seq: job.seq,
                                input: job.data,
                                compressed,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                }));
            }
            w.jobs = Some(job_tx);
            w.results = Some(done_rx);
        }
        w
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    fn out(&mut self) -> &mut io::BufWriter<File> {
        self.file.as_mut().expect("heap writer used after finish")
    }

    /// Appends `data`; returns the heap offset where it starts.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> io::Result<u64> {
        let start = self.position;
        while !data.is_empty() {
            let room = CHUNK_SIZE as usize - self.current.len();
            let n = room.min(data.len());
            self.current.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.position += n as u64;
            if self.current.len() == CHUNK_SIZE as usize {
                self.submit_current()?;
            }
        }
        Ok(start)
    }

    fn submit_current(&mut self) -> io::Result<()> {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_SIZE as usize));
        let chunk = std::mem::replace(&mut self.current, next);
        if self.compression == Compression::None {
            self.out().write_all(&chunk)?;
            self.written += chunk.len() as u64;
            self.recycle(chunk);
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.jobs.is_none() {
            // Single-threaded: compress in place.
            let compressed = ChunkCompressor::with_thread_local(self.coding, &chunk);
            return self.emit(Done {
                seq,
                input: chunk,
                compressed,
            });
        }
        while self.in_flight >= self.max_in_flight {
            self.wait_one()?;
        }
        let jobs = self.jobs.as_ref().unwrap();
        jobs.send(Job { seq, data: chunk })
            .map_err(|_| io::Error::other("compression worker died"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn wait_one(&mut self) -> io::Result<()> {
        let done = self
            .results
            .as_ref()
            .unwrap()
            .recv()
            .map_err(|_| io::Error::other("compression worker died"))?;
        self.in_flight -= 1;
        self.pending.insert(done.seq, done);
        while let Some(d) = self.pending.remove(&self.next_to_write) {
            self.emit(d)?;
        }
        Ok(())
    }

    /// Writes one finished chunk (they arrive here in order).
    fn emit(&mut self, d: Done) -> io::Result<()> {
        debug_assert_eq!(d.seq, self.next_to_write);
        self.next_to_write += 1;
        let stored: &[u8] = match &d.compressed {
            Some(c) => c,
            None => {
                self.raw_chunks += 1;
                &d.input
            }
        };
        self.file.as_mut().unwrap().write_all(stored)?;
        self.written += stored.len() as u64;
        self.stored_sizes.push((stored.len() - 1) as u16);
        self.recycle(d.input);
        Ok(())
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 4 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Flushes the last chunk, drains the workers and appends the chunk table.
    pub(crate) fn finish(mut self) -> io::Result<FinishedHeap> {
        if !self.current.is_empty() {
            self.submit_current()?;
        }
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let chunks = self.position.div_ceil(CHUNK_SIZE as u64);
        if self.compression != Compression::None && chunks > 1 {
            // Table of n-1 sizes; the last chunk's size is implied.
            let mut table = Vec::with_capacity(2 * (chunks as usize - 1));
            for s in &self.stored_sizes[..chunks as usize - 1] {
                table.extend_from_slice(&s.to_be_bytes());
            }
            self.out().write_all(&table)?;
            self.written += table.len() as u64;
        }
        let compression = self.compression;
        let (written, position, raw_chunks) = (self.written, self.position, self.raw_chunks);
        let file = self
            .file
            .take()
            .unwrap()
            .into_inner()
            .map_err(|e| e.into_error())?;
        Ok(FinishedHeap {
            file,
            compression,
            size_compressed: written,
            size_uncompressed: position,
            chunks,
            raw_chunks: if compression == Compression::None {
                chunks
            } else {
                raw_chunks
            },
        })
    }
}

impl Drop for HeapWriter {
    fn drop(&mut self) {
        self.jobs = None;
        self.results = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Per-thread compression state.
enum ChunkCompressor {
    Stored,
    Libdeflate(libdeflater::Compressor),
    ZlibRs(flate2::Compress),
    Zstd(Option<zstd::bulk::Compressor<'static>>),
}

/// Chunks smaller than this are never compressed (Haiku's rule).
const MIN_COMPRESS: usize = 64;

impl ChunkCompressor {
    fn new(coding: ChunkCoding) -> Self {
        match coding {
            ChunkCoding::Stored => ChunkCompressor::Stored,
            ChunkCoding::Libdeflate(level) => {
                // Levels are checked before a build or a delta gets here.
                let level = libdeflater::CompressionLvl::new(level).unwrap_or_default();
                ChunkCompressor::Libdeflate(libdeflater::Compressor::new(level))
            }
            ChunkCoding::ZlibRs(level) => ChunkCompressor::ZlibRs(flate2::Compress::new(
                flate2::Compression::new(level as u32),
                true,
            )),
            ChunkCoding::Zstd(level) => {
                ChunkCompressor::Zstd(zstd::bulk::Compressor::new(level).ok())
            }
        }
    }

    fn with_thread_local(coding: ChunkCoding, data: &[u8]) -> Option<Vec<u8>> {
        thread_local! {
            static C: std::cell::RefCell<Option<(ChunkCoding, ChunkCompressor)>> =
                const { std::cell::RefCell::new(None) };
        }
        C.with(|c| {
            let mut c = c.borrow_mut();
            let (_, compressor) = match &mut *c {
                Some(pair) if pair.0 == coding => pair,
                slot => slot.insert((coding, ChunkCompressor::new(coding))),
            };
            compressor.compress(data)
        })
    }

    /// Returns the compressed chunk if it is strictly smaller than the input.
    fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < MIN_COMPRESS {
            return None;
        }
        let mut out = Vec::with_capacity(data.len() - 1);
        match self {
            ChunkCompressor::Stored => return None,
            ChunkCompressor::Libdeflate(z) => {
                // Room for one byte less than the input: a stream that
                // does not fit is not worth storing compressed.
                out.resize(data.len() - 1, 0);
                let n = z.zlib_compress(data, &mut out).ok()?;
                out.truncate(n);
            }
            ChunkCompressor::ZlibRs(z) => {
                z.reset();
                match z.compress_vec(data, &mut out, flate2::FlushCompress::Finish) {
                    Ok(flate2::Status::StreamEnd) => {}
                    _ => return None,
                }
            }
            ChunkCompressor::Zstd(z) => {
                z.as_mut()?.compress_to_buffer(data, &mut out).ok()?;
            }
        }
        (out.len() < data.len()).then_some(out)
    }
}

/// Compresses one heap chunk exactly as a build with `coding` does:
/// `None` when the chunk is stored raw (too small, or compression does
/// not make it smaller). Deltas rebuild packages byte for byte with it.
pub fn compress_chunk(coding: ChunkCoding, data: &[u8]) -> Option<Vec<u8>> {
    ChunkCompressor::with_thread_local(coding, data)
}

/// Copies a package into a new one with other build options (e.g. to
/// recompress), preserving entry order, metadata, attributes and data.
pub fn repack(src: &crate::Package, out: &Path, options: BuildOptions) -> Result<BuildStats> {
    fn meta_of(src: &crate::Package, e: crate::Entry<'_>) -> Result<EntryMeta> {
        let mut attributes = Vec::new();
        for a in e.attributes() {
            attributes.push((a.name.to_string(), a.type_code, src.read_attribute(&a)?));
        }
        Ok(EntryMeta {
            permissions: e.has_explicit_permissions().then(|| e.permissions()),
            mtime: e.mtime(),
            atime: Some(e.atime()),
            crtime: Some(e.crtime()),
            attributes,
        })
    }
    fn copy(src: &crate::Package, b: &mut PackageBuilder, dir: crate::Entry<'_>) -> Result<()> {
        for e in dir.children() {
            let meta = meta_of(src, e)?;
            match e.kind() {
                EntryKind::Directory => {
                    b.begin_directory(e.name_bytes(), meta)?;
                    copy(src, b, e)?;
                    b.end_directory()?;
                }
                EntryKind::Symlink => b.add_symlink(
                    e.name_bytes(),
                    meta,
                    e.symlink_target_bytes().unwrap_or(b""),
                )?,
                EntryKind::File => {
                    let mut r = src.open_file(e);
                    b.add_file(
                        e.name_bytes(),
                        meta,
                        FileData::Reader {
                            reader: &mut r,
                            size: e.size(),
                            hash: None,
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
    let mut b = PackageBuilder::create(out, options)?;
    copy(src, &mut b, src.toc().root())?;
    b.finish(src.info())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_coding_is_found_again_by_its_code_and_no_other_code_stands_for_one() {
        for c in [Compression::None, Compression::Zlib, Compression::Zstd] {
            let all = ChunkCoding::candidates(c);
            for coding in &all {
                assert_eq!(ChunkCoding::from_code(c, coding.code()), Some(*coding));
                assert_eq!(coding.compression(), c);
            }
            let valid = (0..=u16::MAX as i32)
                .filter(|&code| ChunkCoding::from_code(c, code).is_some())
                .count();
            assert_eq!(valid, all.len(), "{c}");
        }
        // Deltas made before libdeflate hold zlib-rs's levels as themselves.
        assert_eq!(
            ChunkCoding::from_code(Compression::Zlib, 9),
            Some(ChunkCoding::ZlibRs(9))
        );
        assert_eq!(ChunkCoding::Libdeflate(9).code(), 109);
        assert_eq!(
            ChunkCoding::candidates(Compression::Zlib)[..2],
            [ChunkCoding::Libdeflate(9), ChunkCoding::ZlibRs(9)]
        );
    }

    /// Another zlib implementation (flate2's zlib-rs) reads every level's
    /// chunks: they are plain zlib streams, as Haiku expects.
    #[test]
    fn libdeflate_chunks_are_zlib_streams_at_every_level() {
        let data: Vec<u8> = (0..CHUNK_SIZE)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        for level in LIBDEFLATE_LEVELS {
            let stored = compress_chunk(ChunkCoding::Libdeflate(level), &data).unwrap();
            let mut back = Vec::with_capacity(data.len());
            let mut z = flate2::Decompress::new(true);
            let status = z
                .decompress_vec(&stored, &mut back, flate2::FlushDecompress::Finish)
                .unwrap();
            assert_eq!(status, flate2::Status::StreamEnd, "level {level}");
            assert!(back == data, "level {level}");
        }
        // What does not shrink is stored as it is.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(compress_chunk(ChunkCoding::Libdeflate(9), &noise), None);
        assert_eq!(compress_chunk(ChunkCoding::Libdeflate(9), b"tiny"), None);
    }
}
