//! Making a delta: match the new package's files to the old one's, cut the
//! new heap into segments compressed against their old counterparts, and
//! find how each new chunk is stored.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use exos_hpkg::header::CHUNK_SIZE;
use exos_hpkg::heap::HeapReader;
use exos_hpkg::{Compression, DataRef, EntryId, Package};
use rayon::prelude::*;
use zstd::zstd_safe::{self, CParameter};

use crate::error::{invalid, io, package, Result};
use crate::format::{window_log, DeltaHeader, FileId, Recipe, RefRange, Segment};

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
            level: 19,
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
}

/// The largest piece of one file a segment takes, the segment size aimed
/// at, and the reference size aimed at (caps in `format` are twice these).
const PIECE: u64 = 4 << 20;
const SEGMENT_TARGET: u64 = 8 << 20;
const REFERENCE_TARGET: u64 = 24 << 20;
/// Old bytes around a large file's piece, for content that moved a little.
const SLACK: u64 = 1 << 20;

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

/// A run of the new heap and the old bytes it likely resembles.
struct Piece {
    new: Span,
    old: Option<Span>,
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
    let plans = group(pieces);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| invalid(out, e.to_string()))?;
    let total = plans.len() as u64 + newp.heap().chunk_count();
    let done = std::sync::atomic::AtomicU64::new(0);
    let step = || {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n, total);
    };
    let segments: Vec<Segment> = pool.install(|| {
        plans
            .par_iter()
            .map(|p| {
                let s = compress_segment(p, oldp.heap(), newp.heap(), opts.level, old, new);
                step();
                s
            })
            .collect::<Result<_>>()
    })?;
    let compression = newp.header().heap.compression;
    let level = recompression_level(newp.heap(), compression).map_err(package(new))?;
    let recipes: Vec<Recipe> = pool
        .install(|| {
            (0..newp.heap().chunk_count())
                .into_par_iter()
                .map(|i| {
                    let r = recipe(newp.heap(), compression, level, i);
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
        level,
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
        files_matched: matched,
        files_new: unmatched,
        chunks_raw: count(|r| matches!(r, Recipe::Raw)),
        chunks_recompressed: count(|r| matches!(r, Recipe::Recompress { .. })),
        chunks_literal: count(|r| matches!(r, Recipe::Literal(_))),
        compression: compression.to_string(),
        recompression_level: level,
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
            pieces.push(Piece {
                new: Span {
                    offset: pos,
                    len: span.offset - pos,
                },
                old: None,
            });
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
        let mut rel = skip;
        while rel < span.len {
            let len = (span.len - rel).min(PIECE);
            let old_piece = old.and_then(|o| {
                let start = rel.saturating_sub(SLACK).min(o.len);
                let end = (rel + len + SLACK).min(o.len);
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
                old: old_piece,
            });
            rel += len;
        }
        pos = span.end();
    }
    if pos < heap_len {
        pieces.push(Piece {
            new: Span {
                offset: pos,
                len: heap_len - pos,
            },
            old: None,
        });
    }
    Ok((pieces, matched, unmatched))
}

/// A segment to be made: a range of the new heap and its reference.
struct SegmentPlan {
    new: Span,
    refs: Vec<Span>,
}

/// Groups consecutive pieces into segments of about `SEGMENT_TARGET`
/// bytes, their references merged where they touch.
fn group(pieces: Vec<Piece>) -> Vec<SegmentPlan> {
    let mut out: Vec<SegmentPlan> = Vec::new();
    let mut cur: Option<SegmentPlan> = None;
    for p in pieces {
        let start_new = |p: &Piece| SegmentPlan {
            new: p.new,
            refs: p.old.into_iter().collect(),
        };
        let Some(c) = cur.as_mut() else {
            cur = Some(start_new(&p));
            continue;
        };
        let ref_total: u64 = c.refs.iter().map(|r| r.len).sum();
        let add = p.old.map_or(0, |o| o.len);
        if c.new.len + p.new.len > SEGMENT_TARGET
            || ref_total + add > REFERENCE_TARGET
            || c.refs.len() >= crate::format::MAX_REFS as usize
        {
            out.push(cur.take().unwrap());
            cur = Some(start_new(&p));
            continue;
        }
        c.new.len += p.new.len;
        if let Some(o) = p.old {
            match c.refs.last_mut() {
                // Touching or overlapping the last range: extend it.
                Some(l) if o.offset >= l.offset && o.offset <= l.end() + CHUNK_SIZE as u64 => {
                    let end = l.end().max(o.end());
                    l.len = end - l.offset;
                }
                _ => c.refs.push(o),
            }
        }
    }
    out.extend(cur);
    // A merged range can outgrow a u32 only past the caps; split to be safe.
    for s in &mut out {
        let mut refs = Vec::new();
        for r in s.refs.drain(..) {
            let mut off = r.offset;
            while off < r.end() {
                let len = (r.end() - off).min(u32::MAX as u64);
                refs.push(Span { offset: off, len });
                off += len;
            }
        }
        s.refs = refs;
    }
    out
}

fn read_heap(heap: &HeapReader, span: Span, into: &mut Vec<u8>) -> exos_hpkg::Result<()> {
    let start = into.len();
    into.resize(start + span.len as usize, 0);
    let mut last = None;
    heap.read_exact_at_uncached(span.offset, &mut into[start..], &mut last)
}

fn compress_segment(
    plan: &SegmentPlan,
    old_heap: &HeapReader,
    new_heap: &HeapReader,
    level: i32,
    old: &Path,
    new: &Path,
) -> Result<Segment> {
    let mut reference = Vec::new();
    for r in &plan.refs {
        read_heap(old_heap, *r, &mut reference).map_err(package(old))?;
    }
    let mut data = Vec::new();
    read_heap(new_heap, plan.new, &mut data).map_err(package(new))?;
    let frame = compress_with_prefix(&data, &reference, level)
        .map_err(|e| invalid(new, format!("zstd: {e}")))?;
    Ok(Segment {
        out_len: data.len() as u32,
        refs: plan
            .refs
            .iter()
            .map(|r| RefRange {
                offset: r.offset,
                len: r.len as u32,
            })
            .collect(),
        frame,
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

/// The level our compressor reproduces the package's chunks with: tried on
/// its first compressed chunk, the usual level first. Packages built by
/// another compressor match none; their chunks become literals.
fn recompression_level(heap: &HeapReader, c: Compression) -> exos_hpkg::Result<i32> {
    let (default, levels) = match c {
        Compression::None => return Ok(0),
        Compression::Zlib => (exos_hpkg::writer::DEFAULT_ZLIB_LEVEL, 1..=9),
        Compression::Zstd => (exos_hpkg::writer::DEFAULT_ZSTD_LEVEL, 1..=22),
    };
    for i in 0..heap.chunk_count() {
        let (stored, raw) = heap.stored_chunk(i)?;
        if raw {
            continue;
        }
        let data = heap.chunk(i)?;
        for level in std::iter::once(default).chain(levels.filter(|l| *l != default)) {
            if exos_hpkg::compress_chunk(c, level, &data).as_deref() == Some(&stored[..]) {
                return Ok(level);
            }
        }
        return Ok(default);
    }
    Ok(default)
}

fn recipe(heap: &HeapReader, c: Compression, level: i32, i: u64) -> exos_hpkg::Result<Recipe> {
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
        if exos_hpkg::compress_chunk(c, level, &data).as_deref() == Some(&stored[..]) {
            Recipe::Recompress {
                stored_len: stored.len() as u32,
            }
        } else {
            Recipe::Literal(stored)
        },
    )
}
