//! Making a delta: match the new package's files to the old one's, cut the
//! new heap into segments compressed against their old counterparts, and
//! find how each new chunk is stored.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use exos_hpkg::header::CHUNK_SIZE;
use exos_hpkg::heap::HeapReader;
use exos_hpkg::{ChunkCoding, Compression, DataRef, EntryId, Package};
use rayon::prelude::*;
use zstd::zstd_safe::{self, CParameter};

use crate::error::{invalid, io, package, Result};
use crate::format::{window_log, DeltaHeader, FileId, Recipe, RefRange, Segment, SegmentData};

/// How to make a delta.
#[derive(Debug, Clone, Copy)]
pub struct MakeOptions {
    /// zstd level of the segments (1–22).
    pub level: i32,
    /// Threads; 0 = one per core.
    pub threads: usize,
}

impl Default for MakeOptions {
    fn default() -> Self {
        MakeOptions {
            // Level 19 (btultra2) spends a second pass that finds nothing
            // more against a reference: on libssl3, libxml2, git and tzdata
            // 18 makes deltas within 0.5 % of 19's, in 75–80 % of the time.
            level: 18,
            threads: 0,
        }
    }
}

/// What making a delta found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeltaStats {
    /// The old package's SHA-256.
    pub from_sha256: String,
    /// The old package's size.
    pub from_size: u64,
    /// The new package's SHA-256.
    pub to_sha256: String,
    /// The new package's size.
    pub to_size: u64,
    /// The delta's size.
    pub delta_size: u64,
    /// Segments in the delta.
    pub segments: u64,
    /// Of them, copies of unchanged old bytes (nothing compressed).
    pub segments_copied: u64,
    /// New files whose old counterpart was found (by path or by name).
    pub files_matched: u64,
    /// New files with no old counterpart.
    pub files_new: u64,
    /// Chunks stored uncompressed.
    pub chunks_raw: u64,
    /// Chunks our compressor reproduces.
    pub chunks_recompressed: u64,
    /// Chunks our compressor does not reproduce, carried as stored.
    pub chunks_literal: u64,
    /// The new package's compression.
    pub compression: String,
    /// The level that reproduces its chunks.
    pub recompression_level: i32,
    /// The compressor that reproduces them at that level (`libdeflate`,
    /// `zlib-rs` for zlib packages built before libdeflate, `zstd`, `none`).
    pub recompressed_by: String,
}

/// The largest piece of one file a segment takes, and the old bytes
/// around a changed piece of a large file (for content that moved a
/// little), to which the difference in the file's sizes (content that
/// moved further) is added up to [`MAX_SHIFT`]. Pieces are small so that
/// the work spreads over the cores; wider references cost time (zstd
/// indexes every reference byte) for little: on libssl3, 1 MiB pieces
/// with 1 MiB around made the same delta in 4.5 s as 512 KiB with 256 KiB
/// around in 3.2 s (BENCHMARKS.md).
const PIECE: u64 = 512 << 10;
const SLACK: u64 = 256 << 10;
const MAX_SHIFT: u64 = 1 << 20;
/// New bytes one task reads and compares with their counterparts at once.
const WINDOW: u64 = 8 << 20;
/// The new bytes a compressed segment aims at: small enough that a
/// package whose files all changed still keeps every core busy; larger
/// for a large file, whose references around each piece would otherwise
/// cost more than the piece (firefox 140 → 153: 98 s and 74.3 MB with
/// 8 MiB, 102 s and 78.9 MB with 4 MiB).
/// The reference aimed at; the caps in `format` are larger.
const SEGMENT_TARGET: u64 = 1 << 20;
const LARGE_FILE: u64 = 16 << 20;
const LARGE_FILE_SEGMENT_TARGET: u64 = 8 << 20;
const REFERENCE_TARGET: u64 = 24 << 20;

/// A range of a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u64,
}

impl Span {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A run of the new heap and where its old counterpart is.
struct Piece {
    new: Span,
    /// The counterpart's bytes at the same place and of the same length:
    /// when they are equal, the piece is copied instead of compressed.
    aligned: Option<Span>,
    /// The old bytes a changed piece likely resembles (the aligned bytes
    /// with slack around).
    near: Option<Span>,
    /// The new bytes a compressed segment holding it aims at.
    segment_target: u64,
}

/// Makes a delta from `old` to `new` at `out` (written to a temporary file,
/// then renamed).
pub fn make(old: &Path, new: &Path, out: &Path, opts: &MakeOptions) -> Result<DeltaStats> {
    make_with_progress(old, new, out, opts, &|_, _| {})
}

/// [`make`], calling `progress(done, total)` as its parts are made (from
/// several threads): each group of files compressed against the old
/// package, then each chunk's recipe.
pub fn make_with_progress(
    old: &Path,
    new: &Path,
    out: &Path,
    opts: &MakeOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<DeltaStats> {
    if !(1..=22).contains(&opts.level) {
        return Err(invalid(out, format!("zstd level {} (1 to 22)", opts.level)));
    }
    let from = FileId::of(old)?;
    let to = FileId::of(new)?;
    let oldp = Package::open(old).map_err(package(old))?;
    let newp = Package::open(new).map_err(package(new))?;
    let (pieces, matched, unmatched) = plan_pieces(&oldp, &newp)?;
    let windows = windows(&pieces);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| invalid(out, e.to_string()))?;
    let total = windows.len() as u64 + newp.heap().chunk_count();
    let done = std::sync::atomic::AtomicU64::new(0);
    let step = || {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n, total);
    };
    let heaps = Heaps {
        old: oldp.heap(),
        new: newp.heap(),
        old_path: old,
        new_path: new,
    };
    let segments: Vec<Segment> = pool
        .install(|| {
            windows
                .par_iter()
                .map(|w| {
                    let s = make_window(w, &heaps, opts.level);
                    step();
                    s
                })
                .collect::<Result<Vec<Vec<Segment>>>>()
        })?
        .into_iter()
        .flatten()
        .collect();
    let compression = newp.header().heap.compression;
    let coding = recompression(newp.heap(), compression).map_err(package(new))?;
    let recipes: Vec<Recipe> = pool
        .install(|| {
            (0..newp.heap().chunk_count())
                .into_par_iter()
                .map(|i| {
                    let r = recipe(newp.heap(), coding, i);
                    step();
                    r
                })
                .collect::<exos_hpkg::Result<_>>()
        })
        .map_err(package(new))?;

    let mut seg_bytes = Vec::new();
    for s in &segments {
        s.render(&mut seg_bytes);
    }
    let mut recipe_bytes = Vec::new();
    for r in &recipes {
        r.render(&mut recipe_bytes);
    }
    let mut package_header = vec![0u8; newp.header().heap.offset as usize];
    exos_hpkg::Source::read_exact_at(newp.heap().source().as_ref(), &mut package_header, 0)
        .map_err(io(new))?;
    let header = DeltaHeader {
        from,
        to,
        compression,
        level: coding.code(),
        heap_uncompressed: newp.heap().len(),
        package_header,
        segments_length: seg_bytes.len() as u64,
        recipes_length: recipe_bytes.len() as u64,
    };
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(out))?;
    {
        let f = tmp.as_file_mut();
        f.write_all(&header.render()).map_err(io(out))?;
        f.write_all(&seg_bytes).map_err(io(out))?;
        f.write_all(&recipe_bytes).map_err(io(out))?;
        // Published beside packages: readable as any new file would be.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(exos_root::public_mode()))
            .map_err(io(out))?;
        f.sync_all().map_err(io(out))?;
    }
    tmp.persist(out).map_err(|e| crate::DeltaError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    let count = |f: fn(&Recipe) -> bool| recipes.iter().filter(|r| f(r)).count() as u64;
    Ok(DeltaStats {
        from_sha256: from.sha256.to_string(),
        from_size: from.size,
        to_sha256: to.sha256.to_string(),
        to_size: to.size,
        delta_size: (header.render().len() + seg_bytes.len() + recipe_bytes.len()) as u64,
        segments: segments.len() as u64,
        segments_copied: segments
            .iter()
            .filter(|s| s.data == SegmentData::Copy)
            .count() as u64,
        files_matched: matched,
        files_new: unmatched,
        chunks_raw: count(|r| matches!(r, Recipe::Raw)),
        chunks_recompressed: count(|r| matches!(r, Recipe::Recompress { .. })),
        chunks_literal: count(|r| matches!(r, Recipe::Literal(_))),
        compression: compression.to_string(),
        recompression_level: coding.level(),
        recompressed_by: coding.compressor().to_string(),
    })
}

/// Every file's data range in a package, and the metadata (TOC and
/// attributes, at the end of the heap) as one more range.
/// Paths are bytes, as stored: two names that are not UTF-8 never match by
/// looking alike.
fn data_ranges(p: &Package) -> Vec<(Span, Vec<u8>, Option<EntryId>)> {
    let mut v = Vec::new();
    for (_, e) in p.toc().walk() {
        if let DataRef::Heap { offset, size } = e.data() {
            if size > 0 {
                v.push((Span { offset, len: size }, e.path_bytes(), Some(e.id())));
            }
        }
    }
    let meta = p.header().toc_offset();
    let heap_len = p.heap().len();
    if meta < heap_len {
        v.push((
            Span {
                offset: meta,
                len: heap_len - meta,
            },
            b"\0metadata".to_vec(),
            None,
        ));
    }
    v
}

/// The last component of a `/`-separated path.
fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Cuts the new heap, start to end, into pieces with their old
/// counterparts: the old file of the same path, else of the same name,
/// else of the same content. Returns the pieces and how many files were
/// matched or not.
fn plan_pieces(oldp: &Package, newp: &Package) -> Result<(Vec<Piece>, u64, u64)> {
    let old_ranges = data_ranges(oldp);
    let mut by_path: HashMap<&[u8], Span> = HashMap::new();
    let mut by_name: HashMap<&[u8], Span> = HashMap::new();
    for (span, path, _) in &old_ranges {
        by_path.entry(path.as_slice()).or_insert(*span);
        by_name.entry(file_name(path)).or_insert(*span);
    }
    let mut new_ranges = data_ranges(newp);
    new_ranges.sort_by_key(|(s, _, _)| s.offset);
    // Content digests only when some file has no counterpart by name
    // (they cost a pass over both heaps).
    let renamed = new_ranges.iter().any(|(_, path, id)| {
        id.is_some()
            && !by_path.contains_key(path.as_slice())
            && !by_name.contains_key(file_name(path))
    });
    let (mut by_digest, mut new_digest) = (HashMap::new(), HashMap::new());
    if renamed {
        let old_digests: HashMap<EntryId, [u8; 16]> = oldp
            .content_digests()
            .map_err(package(oldp.path()))?
            .into_iter()
            .collect();
        for (span, _, id) in &old_ranges {
            if let Some(d) = id.and_then(|id| old_digests.get(&id)) {
                by_digest.entry(*d).or_insert(*span);
            }
        }
        new_digest = newp
            .content_digests()
            .map_err(package(newp.path()))?
            .into_iter()
            .collect();
    }
    let heap_len = newp.heap().len();
    let (mut matched, mut unmatched) = (0, 0);
    let mut pieces = Vec::new();
    let mut pos = 0u64;
    for (span, path, id) in &new_ranges {
        if span.end() <= pos {
            continue; // data shared with an earlier file (stored once)
        }
        if span.offset > pos {
            push_unmatched(&mut pieces, pos, span.offset);
            pos = span.offset;
        }
        let old = by_path
            .get(path.as_slice())
            .or_else(|| by_name.get(file_name(path)))
            .or_else(|| {
                id.and_then(|id| new_digest.get(&id))
                    .and_then(|d| by_digest.get(d))
            })
            .copied();
        if old.is_some() {
            matched += 1;
        } else {
            unmatched += 1;
        }
        // The part not yet covered, cut into pieces; a large file's piece
        // is matched to the same place in its counterpart, with slack.
        let skip = pos - span.offset;
        let slack = SLACK + old.map_or(0, |o| o.len.abs_diff(span.len).min(MAX_SHIFT));
        let mut rel = skip;
        while rel < span.len {
            let len = (span.len - rel).min(PIECE);
            let aligned = old.and_then(|o| {
                (rel + len <= o.len).then(|| Span {
                    offset: o.offset + rel,
                    len,
                })
            });
            let near = old.and_then(|o| {
                let start = rel.saturating_sub(slack).min(o.len);
                let end = (rel + len + slack).min(o.len);
                (end > start).then(|| Span {
                    offset: o.offset + start,
                    len: end - start,
                })
            });
            pieces.push(Piece {
                new: Span {
                    offset: span.offset + rel,
                    len,
                },
                aligned,
                near,
                segment_target: if span.len >= LARGE_FILE {
                    LARGE_FILE_SEGMENT_TARGET
                } else {
                    SEGMENT_TARGET
                },
            });
            rel += len;
        }
        pos = span.end();
    }
    if pos < heap_len {
        push_unmatched(&mut pieces, pos, heap_len);
    }
    Ok((pieces, matched, unmatched))
}

/// Heap bytes `start..end` that belong to no file, in pieces.
fn push_unmatched(pieces: &mut Vec<Piece>, start: u64, end: u64) {
    let mut pos = start;
    while pos < end {
        let len = (end - pos).min(PIECE);
        pieces.push(Piece {
            new: Span { offset: pos, len },
            aligned: None,
            near: None,
            segment_target: SEGMENT_TARGET,
        });
        pos += len;
    }
}

/// The two heaps a delta is made between, and their packages' paths (for
/// errors).
struct Heaps<'a> {
    old: &'a HeapReader,
    new: &'a HeapReader,
    old_path: &'a Path,
    new_path: &'a Path,
}

/// Consecutive pieces of about [`WINDOW`] new bytes: the unit of parallel
/// work.
fn windows(pieces: &[Piece]) -> Vec<&[Piece]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in pieces.iter().enumerate() {
        if i > start && bytes + p.new.len > WINDOW {
            out.push(&pieces[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += p.new.len;
    }
    if start < pieces.len() {
        out.push(&pieces[start..]);
    }
    out
}

/// A segment to be made.
#[derive(Debug, PartialEq, Eq)]
enum SegmentPlan {
    /// New bytes equal to these old ranges, in order.
    Copy { new: Span, refs: Vec<Span> },
    /// New bytes compressed against these old ranges.
    Compress { new: Span, refs: Vec<Span> },
}

impl SegmentPlan {
    fn new_span(&self) -> Span {
        match self {
            SegmentPlan::Copy { new, .. } | SegmentPlan::Compress { new, .. } => *new,
        }
    }
}

/// Adds a piece to the plans: to the last one if it is of the same kind
/// and has room, else as a new one. Copies take their ranges exactly
/// (merged only where they continue each other); compressed segments
/// take the slack around them, merged where they touch or overlap.
fn plan(plans: &mut Vec<SegmentPlan>, piece: &Piece, unchanged: bool) {
    let (new, near) = (piece.new, piece.near);
    let copy_of = piece.aligned.filter(|_| unchanged);
    let limits = |n: &Span, refs: &[Span], add: u64, target: u64, reference: u64| {
        n.len + new.len <= target
            && refs.iter().map(|r| r.len).sum::<u64>() + add <= reference
            && refs.len() < crate::format::MAX_REFS as usize
    };
    match (plans.last_mut(), copy_of) {
        (Some(SegmentPlan::Copy { new: n, refs }), Some(o))
            if limits(n, refs, o.len, crate::format::MAX_SEGMENT as u64, u64::MAX) =>
        {
            n.len += new.len;
            match refs.last_mut() {
                Some(l) if l.end() == o.offset => l.len += o.len,
                _ => refs.push(o),
            }
        }
        (Some(SegmentPlan::Compress { new: n, refs }), None)
            if limits(
                n,
                refs,
                near.map_or(0, |o| o.len),
                piece.segment_target,
                REFERENCE_TARGET,
            ) =>
        {
            n.len += new.len;
            if let Some(o) = near {
                match refs.last_mut() {
                    // Touching or overlapping the last range: extend it.
                    Some(l) if o.offset >= l.offset && o.offset <= l.end() + CHUNK_SIZE as u64 => {
                        let end = l.end().max(o.end());
                        l.len = end - l.offset;
                    }
                    _ => refs.push(o),
                }
            }
        }
        (_, Some(o)) => plans.push(SegmentPlan::Copy { new, refs: vec![o] }),
        (_, None) => plans.push(SegmentPlan::Compress {
            new,
            refs: near.into_iter().collect(),
        }),
    }
}

/// Reads a window's new bytes, finds which pieces are unchanged, and makes
/// its segments: copies for unchanged runs, compressed segments (in
/// parallel) for the rest.
fn make_window(pieces: &[Piece], heaps: &Heaps, level: i32) -> Result<Vec<Segment>> {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return Ok(Vec::new());
    };
    let start = first.new.offset;
    let mut data = Vec::new();
    read_heap(
        heaps.new,
        Span {
            offset: start,
            len: last.new.end() - start,
        },
        &mut data,
    )
    .map_err(package(heaps.new_path))?;
    let mut plans = Vec::new();
    let (mut old_bytes, mut cached) = (Vec::new(), None);
    for p in pieces {
        let mine = &data[(p.new.offset - start) as usize..][..p.new.len as usize];
        let unchanged = match p.aligned {
            Some(a) => {
                old_bytes.resize(a.len as usize, 0);
                heaps
                    .old
                    .read_exact_at_uncached(a.offset, &mut old_bytes, &mut cached)
                    .map_err(package(heaps.old_path))?;
                old_bytes == mine
            }
            None => false,
        };
        plan(&mut plans, p, unchanged);
    }
    plans
        .par_iter()
        .map(|pl| {
            let new = pl.new_span();
            let mine = &data[(new.offset - start) as usize..][..new.len as usize];
            match pl {
                SegmentPlan::Copy { refs, .. } => Ok(Segment {
                    out_len: new.len as u32,
                    refs: ranges(refs),
                    data: SegmentData::Copy,
                }),
                SegmentPlan::Compress { refs, .. } => compress_segment(mine, refs, heaps, level),
            }
        })
        .collect()
}

/// A plan's ranges as the format stores them (a range's length is a u32).
fn ranges(refs: &[Span]) -> Vec<RefRange> {
    let mut out = Vec::new();
    for r in refs {
        let mut off = r.offset;
        while off < r.end() {
            let len = (r.end() - off).min(u32::MAX as u64);
            out.push(RefRange {
                offset: off,
                len: len as u32,
            });
            off += len;
        }
    }
    out
}

fn read_heap(heap: &HeapReader, span: Span, into: &mut Vec<u8>) -> exos_hpkg::Result<()> {
    let start = into.len();
    into.resize(start + span.len as usize, 0);
    let mut last = None;
    heap.read_exact_at_uncached(span.offset, &mut into[start..], &mut last)
}

fn compress_segment(data: &[u8], refs: &[Span], heaps: &Heaps, level: i32) -> Result<Segment> {
    let mut reference = Vec::new();
    for r in refs {
        read_heap(heaps.old, *r, &mut reference).map_err(package(heaps.old_path))?;
    }
    let frame = compress_with_prefix(data, &reference, level)
        .map_err(|e| invalid(heaps.new_path, format!("zstd: {e}")))?;
    Ok(Segment {
        out_len: data.len() as u32,
        refs: ranges(refs),
        data: SegmentData::Frame(frame),
    })
}

/// zstd with `reference` as prefix (what `zstd --patch-from` does).
pub(crate) fn compress_with_prefix(
    data: &[u8],
    reference: &[u8],
    level: i32,
) -> std::result::Result<Vec<u8>, String> {
    let err = |c: usize| zstd_safe::get_error_name(c).to_string();
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(err)?;
    cctx.set_parameter(CParameter::WindowLog(window_log(
        data.len() + reference.len(),
    )))
    .map_err(err)?;
    if !reference.is_empty() {
        cctx.ref_prefix(reference).map_err(err)?;
    }
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(err)?;
    Ok(out)
}

/// Compressed chunks sampled to find the level: spread over the heap.
const LEVEL_SAMPLES: u64 = 8;

/// The compressor and level that reproduce the package's chunks: the
/// first, the likeliest first ([`ChunkCoding::candidates`]), that
/// reproduces every sampled chunk (a small chunk can come out the same at
/// several levels, so one chunk is not enough: tzdata's first chunk
/// matched level 7 of a level-9 package), else the one that reproduces the
/// most of them in a row (from the first: a coding is dropped at its first
/// miss). Packages built by another compressor match none; their chunks
/// become literals.
fn recompression(heap: &HeapReader, c: Compression) -> exos_hpkg::Result<ChunkCoding> {
    if c == Compression::None {
        return Ok(ChunkCoding::Stored);
    }
    let candidates = ChunkCoding::candidates(c);
    let samples = level_samples(heap)?;
    let mut best = (0, candidates[0]);
    for coding in candidates {
        let reproduced = samples
            .iter()
            .take_while(|(data, stored)| {
                exos_hpkg::compress_chunk(coding, data).as_deref() == Some(&stored[..])
            })
            .count();
        if reproduced == samples.len() {
            return Ok(coding);
        }
        if reproduced > best.0 {
            best = (reproduced, coding);
        }
    }
    Ok(best.1)
}

/// Up to [`LEVEL_SAMPLES`] compressed chunks, (uncompressed, stored), from
/// places spread over the heap, the first compressed chunk first.
fn level_samples(heap: &HeapReader) -> exos_hpkg::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let count = heap.chunk_count();
    let mut out = Vec::new();
    let mut next = 0;
    for k in 0..LEVEL_SAMPLES {
        // The first compressed chunk at or after this place.
        let mut i = next.max(k * count / LEVEL_SAMPLES);
        while i < count {
            let (stored, raw) = heap.stored_chunk(i)?;
            i += 1;
            if !raw {
                out.push((heap.chunk(i - 1)?.to_vec(), stored));
                break;
            }
        }
        next = i;
    }
    Ok(out)
}

fn recipe(heap: &HeapReader, coding: ChunkCoding, i: u64) -> exos_hpkg::Result<Recipe> {
    let (stored, raw) = heap.stored_chunk(i)?;
    if raw {
        return Ok(Recipe::Raw);
    }
    let mut last = None;
    let start = i * CHUNK_SIZE as u64;
    let len = (heap.len() - start).min(CHUNK_SIZE as u64) as usize;
    let mut data = vec![0u8; len];
    heap.read_exact_at_uncached(start, &mut data, &mut last)?;
    Ok(
        if exos_hpkg::compress_chunk(coding, &data).as_deref() == Some(&stored[..]) {
            Recipe::Recompress {
                stored_len: stored.len() as u32,
            }
        } else {
            Recipe::Literal(stored)
        },
    )
}
