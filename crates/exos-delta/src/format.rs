//! The delta file (`.delta`), all integers little-endian:
//!
//! ```text
//! 0    magic "exosdlt2" ("exosdlt1": version 1, no copy segments)
//! 8    from: size u64, SHA-256 [32]      the old package
//! 48   to:   size u64, SHA-256 [32]      the package the delta rebuilds
//! 88   compression u16 (HPKG's code), recompression u16 (`ChunkCoding::code`:
//!      zlib-rs and zstd levels as themselves, libdeflate's as 100 + level)
//! 92   package header length u32         bytes before the new heap (≤ 4096)
//! 96   uncompressed heap length u64
//! 104  segments length u64, recipes length u64, reserved u64 (0)
//! 128  the new package's header bytes
//!      segments section, then recipes section, then end of file
//! ```
//!
//! A segment: `out_len u32`, `ref_count u16`, `ref_count × (offset u64,
//! len u32)` ranges of the old uncompressed heap, `frame_len u32`, a zstd
//! frame that decompresses, with the concatenated ranges as its prefix, to
//! exactly `out_len` bytes. Since version 2, a `frame_len` of 0 (no zstd
//! frame is empty) makes a *copy* segment: its output is the concatenated
//! ranges themselves, which must be `out_len` bytes — unchanged files cost
//! a range each instead of a compression against themselves. A recipe: tag `0` raw; `1` recompress, then
//! the stored length u32; `2` literal, then length u32 and the bytes.
//!
//! [`DeltaReader`] is the one parser. It allocates only what it has read
//! (sections must add up to the file's size; every length is checked
//! against what is left and against the caps below before allocating).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use exos_hpkg::header::CHUNK_SIZE;
use exos_hpkg::Compression;
use exos_root::Sha256;

use crate::error::{invalid, io, Result};

/// The first bytes of every delta file this version writes.
pub const MAGIC: [u8; 8] = *b"exosdlt2";
/// The first bytes of a version-1 delta (read, never written): no copy
/// segments.
pub const MAGIC_V1: [u8; 8] = *b"exosdlt1";
/// Bytes of the header before the new package's HPKG header.
pub const FIXED_HEADER: usize = 128;
/// Largest HPKG header a delta carries.
pub const MAX_PACKAGE_HEADER: u32 = 4096;
/// Largest segment output: what applying holds decompressed at once.
pub const MAX_SEGMENT: u32 = 16 << 20;
/// Largest reference of one segment: what applying reads from the old
/// package at once.
pub const MAX_REFERENCE: u64 = 64 << 20;
/// Most reference ranges one segment may have.
pub const MAX_REFS: u16 = 4096;
/// zstd's window limit for segment frames (reference + output < 128 MiB).
pub const MAX_WINDOW_LOG: u32 = 27;

/// A file by size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// Its size in bytes.
    pub size: u64,
    /// Its contents' SHA-256.
    pub sha256: Sha256,
}

impl FileId {
    /// The size and SHA-256 of the file at `path`.
    pub fn of(path: &Path) -> Result<FileId> {
        Ok(FileId {
            size: std::fs::metadata(path).map_err(io(path))?.len(),
            sha256: Sha256::of_file(path).map_err(io(path))?,
        })
    }
}

/// The fixed part of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaHeader {
    /// The package the delta applies to.
    pub from: FileId,
    /// The package it rebuilds.
    pub to: FileId,
    /// The new package's chunk compression.
    pub compression: Compression,
    /// How chunks marked "recompress" are compressed: a
    /// [`exos_hpkg::ChunkCoding`]'s code (zlib-rs's and zstd's levels as
    /// themselves, libdeflate's as 100 + level).
    pub level: i32,
    /// Size of the new package's heap uncompressed.
    pub heap_uncompressed: u64,
    /// The new package's bytes before its heap (its HPKG header).
    pub package_header: Vec<u8>,
    /// Bytes of segments after the header.
    pub segments_length: u64,
    /// Bytes of recipes after the segments.
    pub recipes_length: u64,
}

impl DeltaHeader {
    /// The header's bytes.
    pub fn render(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_HEADER + self.package_header.len());
        b.extend_from_slice(&MAGIC);
        for id in [self.from, self.to] {
            b.extend_from_slice(&id.size.to_le_bytes());
            b.extend_from_slice(&id.sha256.0);
        }
        b.extend_from_slice(&self.compression.raw().to_le_bytes());
        b.extend_from_slice(&(self.level as u16).to_le_bytes());
        b.extend_from_slice(&(self.package_header.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.heap_uncompressed.to_le_bytes());
        b.extend_from_slice(&self.segments_length.to_le_bytes());
        b.extend_from_slice(&self.recipes_length.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        debug_assert_eq!(b.len(), FIXED_HEADER);
        b.extend_from_slice(&self.package_header);
        b
    }

    /// Chunks of the new heap.
    pub fn chunk_count(&self) -> u64 {
        self.heap_uncompressed.div_ceil(CHUNK_SIZE as u64)
    }
}

fn level_ok(c: Compression, level: i32) -> bool {
    exos_hpkg::ChunkCoding::from_code(c, level).is_some()
}

/// One range of the old uncompressed heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefRange {
    /// Where it starts in the old heap.
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// How a segment gives its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentData {
    /// The reference itself, unchanged (version 2).
    Copy,
    /// A zstd frame compressed with the reference as prefix.
    Frame(Vec<u8>),
}

/// A piece of the new uncompressed heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Bytes of the new heap the segment gives.
    pub out_len: u32,
    /// The old heap's ranges, concatenated: the frame's prefix, or the
    /// output of a copy.
    pub refs: Vec<RefRange>,
    /// A copy of the reference or a frame against it.
    pub data: SegmentData,
}

impl Segment {
    /// Appends the segment's bytes.
    pub fn render(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.out_len.to_le_bytes());
        out.extend_from_slice(&(self.refs.len() as u16).to_le_bytes());
        for r in &self.refs {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.len.to_le_bytes());
        }
        let frame: &[u8] = match &self.data {
            SegmentData::Copy => &[],
            SegmentData::Frame(f) => f,
        };
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(frame);
    }

    /// Bytes of the old heap it refers to.
    pub fn reference_len(&self) -> u64 {
        self.refs.iter().map(|r| r.len as u64).sum()
    }
}

/// How one chunk of the new package is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// Stored uncompressed.
    Raw,
    /// Compressed with the delta's compression and level, giving this many bytes.
    Recompress {
        /// The stored length, checked after compressing.
        stored_len: u32,
    },
    /// These bytes, as the package stores them.
    Literal(Vec<u8>),
}

impl Recipe {
    /// Appends the recipe's bytes.
    pub fn render(&self, out: &mut Vec<u8>) {
        match self {
            Recipe::Raw => out.push(0),
            Recipe::Recompress { stored_len } => {
                out.push(1);
                out.extend_from_slice(&stored_len.to_le_bytes());
            }
            Recipe::Literal(b) => {
                out.push(2);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// One section of the file, read in order.
struct Section {
    reader: BufReader<File>,
    left: u64,
    name: &'static str,
}

/// Reads a delta: its header on open, then segments and recipes in order.
pub struct DeltaReader {
    path: PathBuf,
    /// 1 or 2 (which segment kinds are allowed).
    version: u8,
    header: DeltaHeader,
    segments: Section,
    recipes: Section,
}

impl DeltaReader {
    /// Opens a delta and parses its header (bounded by [`MAX_PACKAGE_HEADER`]).
    pub fn open(path: &Path) -> Result<DeltaReader> {
        let mut f = File::open(path).map_err(io(path))?;
        let size = f.metadata().map_err(io(path))?.len();
        let mut fixed = [0u8; FIXED_HEADER];
        if size < FIXED_HEADER as u64 {
            return Err(invalid(
                path,
                format!("{size} bytes, shorter than the {FIXED_HEADER}-byte header"),
            ));
        }
        f.read_exact(&mut fixed).map_err(io(path))?;
        let version = if fixed[0..8] == MAGIC {
            2
        } else if fixed[0..8] == MAGIC_V1 {
            1
        } else {
            return Err(invalid(
                path,
                "no \"exosdlt2\" or \"exosdlt1\" magic (not an exos delta)",
            ));
        };
        let u64_at = |o: usize| u64::from_le_bytes(fixed[o..o + 8].try_into().unwrap());
        let id_at = |o: usize| FileId {
            size: u64_at(o),
            sha256: Sha256(fixed[o + 8..o + 40].try_into().unwrap()),
        };
        let from = id_at(8);
        let to = id_at(48);
        let compression = Compression::from_raw(u16::from_le_bytes([fixed[88], fixed[89]]))
            .map_err(|e| invalid(path, e.to_string()))?;
        let level = u16::from_le_bytes([fixed[90], fixed[91]]) as i32;
        if !level_ok(compression, level) {
            return Err(invalid(
                path,
                format!("recompression level {level} is out of range for {compression}"),
            ));
        }
        let header_len = u32::from_le_bytes(fixed[92..96].try_into().unwrap());
        let heap_uncompressed = u64_at(96);
        let segments_length = u64_at(104);
        let recipes_length = u64_at(112);
        if u64_at(120) != 0 {
            return Err(invalid(path, "reserved header field is not 0"));
        }
        if !(80..=MAX_PACKAGE_HEADER).contains(&header_len) {
            return Err(invalid(
                path,
                format!(
                    "package header of {header_len} bytes (80 to {MAX_PACKAGE_HEADER} allowed)"
                ),
            ));
        }
        let total = (FIXED_HEADER as u64 + header_len as u64)
            .checked_add(segments_length)
            .and_then(|t| t.checked_add(recipes_length));
        if total != Some(size) {
            return Err(invalid(
                path,
                format!("header ({header_len}), segments ({segments_length}) and recipes ({recipes_length}) do not add up to the file's {size} bytes"),
            ));
        }
        if from.size == 0 || to.size == 0 {
            return Err(invalid(path, "a package of 0 bytes"));
        }
        if heap_uncompressed == 0 && (segments_length != 0 || recipes_length != 0) {
            return Err(invalid(path, "segments or recipes for an empty heap"));
        }
        let mut package_header = vec![0u8; header_len as usize];
        f.read_exact(&mut package_header).map_err(io(path))?;
        let section = |start: u64, left: u64, name| -> Result<Section> {
            let mut f = File::open(path).map_err(io(path))?;
            f.seek(SeekFrom::Start(start)).map_err(io(path))?;
            Ok(Section {
                reader: BufReader::with_capacity(256 << 10, f),
                left,
                name,
            })
        };
        let seg_start = FIXED_HEADER as u64 + header_len as u64;
        Ok(DeltaReader {
            path: path.to_path_buf(),
            version,
            segments: section(seg_start, segments_length, "segments")?,
            recipes: section(seg_start + segments_length, recipes_length, "recipes")?,
            header: DeltaHeader {
                from,
                to,
                compression,
                level,
                heap_uncompressed,
                package_header,
                segments_length,
                recipes_length,
            },
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &DeltaHeader {
        &self.header
    }

    /// The delta's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next segment, or `None` at the end of the section.
    pub fn next_segment(&mut self) -> Result<Option<Segment>> {
        if self.segments.left == 0 {
            return Ok(None);
        }
        let p = &self.path;
        let s = &mut self.segments;
        let out_len = read_u32(s, p)?;
        if out_len == 0 || out_len > MAX_SEGMENT {
            return Err(invalid(
                p,
                format!("segment of {out_len} bytes (1 to {MAX_SEGMENT} allowed)"),
            ));
        }
        let count = u16::from_le_bytes(read(s, p, 2)?.try_into().unwrap());
        if count > MAX_REFS {
            return Err(invalid(
                p,
                format!("segment with {count} reference ranges (at most {MAX_REFS})"),
            ));
        }
        let mut refs = Vec::new();
        let mut total = 0u64;
        for _ in 0..count {
            let b = read(s, p, 12)?;
            let r = RefRange {
                offset: u64::from_le_bytes(b[0..8].try_into().unwrap()),
                len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            };
            if r.len == 0 {
                return Err(invalid(p, "empty reference range"));
            }
            total += r.len as u64;
            if total > MAX_REFERENCE {
                return Err(invalid(
                    p,
                    format!("segment references more than {MAX_REFERENCE} bytes"),
                ));
            }
            refs.push(r);
        }
        let frame_len = read_u32(s, p)?;
        if frame_len == 0 {
            if self.version < 2 {
                return Err(invalid(
                    p,
                    "an empty zstd frame (copy segments need version 2)",
                ));
            }
            if total != out_len as u64 {
                return Err(invalid(
                    p,
                    format!("a copy segment of {out_len} bytes from {total} bytes of reference"),
                ));
            }
            return Ok(Some(Segment {
                out_len,
                refs,
                data: SegmentData::Copy,
            }));
        }
        let bound = zstd::zstd_safe::compress_bound(out_len as usize) as u64;
        if frame_len as u64 > bound {
            return Err(invalid(
                p,
                format!("a {frame_len}-byte frame for {out_len} bytes (zstd never needs more than {bound})"),
            ));
        }
        let frame = read(s, p, frame_len as usize)?;
        Ok(Some(Segment {
            out_len,
            refs,
            data: SegmentData::Frame(frame),
        }))
    }

    /// The next recipe (`None` at the end of the section).
    pub fn next_recipe(&mut self) -> Result<Option<Recipe>> {
        if self.recipes.left == 0 {
            return Ok(None);
        }
        let p = &self.path;
        let s = &mut self.recipes;
        let tag = read(s, p, 1)?[0];
        Ok(Some(match tag {
            0 => Recipe::Raw,
            1 => {
                let stored_len = read_u32(s, p)?;
                if stored_len == 0 || stored_len >= CHUNK_SIZE {
                    return Err(invalid(
                        p,
                        format!("recompressed chunk of {stored_len} bytes"),
                    ));
                }
                Recipe::Recompress { stored_len }
            }
            2 => {
                let len = read_u32(s, p)?;
                if len == 0 || len >= CHUNK_SIZE {
                    return Err(invalid(p, format!("literal chunk of {len} bytes")));
                }
                Recipe::Literal(read(s, p, len as usize)?)
            }
            t => return Err(invalid(p, format!("unknown chunk recipe {t}"))),
        }))
    }

    /// Checks both sections were read to their ends.
    pub fn finish(&self) -> Result<()> {
        for s in [&self.segments, &self.recipes] {
            if s.left != 0 {
                return Err(invalid(
                    &self.path,
                    format!("{} bytes of the {} section left over", s.left, s.name),
                ));
            }
        }
        Ok(())
    }
}

fn read(s: &mut Section, path: &Path, n: usize) -> Result<Vec<u8>> {
    if n as u64 > s.left {
        return Err(invalid(
            path,
            format!(
                "the {} section ends {} bytes into a {n}-byte field",
                s.name, s.left
            ),
        ));
    }
    let mut v = vec![0u8; n];
    s.reader.read_exact(&mut v).map_err(io(path))?;
    s.left -= n as u64;
    Ok(v)
}

fn read_u32(s: &mut Section, path: &Path) -> Result<u32> {
    Ok(u32::from_le_bytes(read(s, path, 4)?.try_into().unwrap()))
}

/// The zstd window log covering `len` bytes (prefix and output).
pub(crate) fn window_log(len: usize) -> u32 {
    let mut w = 10;
    while w < MAX_WINDOW_LOG && (1usize << w) < len {
        w += 1;
    }
    w
}
