//! Applying a delta: rebuild the new heap segment by segment from the old
//! package, store each chunk as its recipe says, and keep the result only
//! if it is the package the delta promises.

use std::io::Write;
use std::path::Path;

use exos_hpkg::header::CHUNK_SIZE;
use exos_hpkg::{ChunkCoding, Compression, Package};
use rayon::prelude::*;
use sha2::Digest;
use zstd::zstd_safe::{self, DParameter};

use crate::error::{invalid, io, package, DeltaError, Result};
use crate::format::{DeltaReader, FileId, Recipe, SegmentData, MAX_WINDOW_LOG};
use exos_root::Sha256;

/// What applying a delta made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The rebuilt package's SHA-256.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Segments decompressed.
    pub segments: u64,
    /// Chunks stored.
    pub chunks: u64,
}

/// Chunks stored per batch (compressed in parallel): 4 MiB.
const BATCH_CHUNKS: usize = 64;

/// Rebuilds the package `delta` describes from `old` into `out`. Checks
/// first that `old` is the package the delta was made from; writes to a
/// temporary file beside `out` and renames it only once its size and
/// SHA-256 are the promised ones.
pub fn apply(old: &Path, delta: &Path, out: &Path) -> Result<Applied> {
    let mut reader = DeltaReader::open(delta)?;
    let header = reader.header().clone();
    let have = FileId::of(old)?;
    if have != header.from {
        return Err(DeltaError::WrongBase {
            delta: delta.to_path_buf(),
            old: old.to_path_buf(),
            expected: header.from.sha256.to_string(),
            expected_size: header.from.size,
            found: have.sha256.to_string(),
            found_size: have.size,
        });
    }
    let oldp = Package::open(old).map_err(package(old))?;
    let old_heap = oldp.heap();
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new("."))).map_err(io(out))?;
    let mut w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
        hash: sha2::Sha256::new(),
        written: 0,
        limit: header.to.size,
    };
    w.write_all(&header.package_header).map_err(io(out))?;

    let compressed = header.compression != Compression::None;
    let coding = ChunkCoding::from_code(header.compression, header.level).ok_or_else(|| {
        invalid(
            delta,
            format!(
                "recompression level {} is out of range for {}",
                header.level, header.compression
            ),
        )
    })?;
    let mut store = ChunkStore {
        coding,
        sizes: Vec::new(),
        chunk: 0,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut produced = 0u64;
    let mut segments = 0u64;
    let mut reference: Vec<u8> = Vec::new();
    while let Some(seg) = reader.next_segment()? {
        segments += 1;
        produced += seg.out_len as u64;
        if produced > header.heap_uncompressed {
            return Err(invalid(
                delta,
                format!(
                    "segments make more than the {}-byte heap",
                    header.heap_uncompressed
                ),
            ));
        }
        reference.clear();
        // One decompressed chunk kept across ranges: copies list many
        // small neighbouring ranges.
        let mut last = None;
        for r in &seg.refs {
            if r.offset
                .checked_add(r.len as u64)
                .is_none_or(|e| e > old_heap.len())
            {
                return Err(invalid(
                    delta,
                    format!(
                        "segment {segments} refers to {}+{}, outside the old package's {}-byte heap",
                        r.offset,
                        r.len,
                        old_heap.len()
                    ),
                ));
            }
            let start = reference.len();
            reference.resize(start + r.len as usize, 0);
            old_heap
                .read_exact_at_uncached(r.offset, &mut reference[start..], &mut last)
                .map_err(package(old))?;
        }
        match &seg.data {
            SegmentData::Copy => {
                if reference.len() != seg.out_len as usize {
                    return Err(invalid(
                        delta,
                        format!(
                            "segment {segments}: a copy of {} bytes for {}",
                            reference.len(),
                            seg.out_len
                        ),
                    ));
                }
                pending.extend_from_slice(&reference);
            }
            SegmentData::Frame(frame) => {
                let out = decompress_segment(frame, &reference, seg.out_len, segments, delta)?;
                pending.extend_from_slice(&out);
            }
        }
        let whole = BATCH_CHUNKS * CHUNK_SIZE as usize;
        while pending.len() >= whole {
            store.batch(&pending[..whole], &mut reader, &mut w, delta, out)?;
            pending.drain(..whole);
        }
    }
    if produced != header.heap_uncompressed {
        return Err(invalid(
            delta,
            format!(
                "segments make {produced} bytes of the {}-byte heap",
                header.heap_uncompressed
            ),
        ));
    }
    if !pending.is_empty() {
        store.batch(&pending, &mut reader, &mut w, delta, out)?;
    }
    if reader.next_recipe()?.is_some() {
        return Err(invalid(delta, "more recipes than chunks"));
    }
    reader.finish()?;
    if compressed && !store.sizes.is_empty() {
        // Haiku's chunk table: every chunk's stored size minus one but the last's.
        let n = store.sizes.len() - 1;
        for s in &store.sizes[..n] {
            w.write_all(&((s - 1) as u16).to_be_bytes())
                .map_err(io(out))?;
        }
    }
    w.inner.flush().map_err(io(out))?;
    let found = Sha256(w.hash.clone().finalize().into());
    let size = w.written;
    drop(w);
    if size != header.to.size || found != header.to.sha256 {
        return Err(DeltaError::Mismatch {
            path: delta.to_path_buf(),
            expected: header.to.sha256.to_string(),
            expected_size: header.to.size,
            found: found.to_string(),
            found_size: size,
        });
    }
    // A package like any other: readable as any new file would be.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(exos_root::public_mode()))
        .map_err(io(out))?;
    tmp.as_file().sync_all().map_err(io(out))?;
    tmp.persist(out).map_err(|e| DeltaError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    if let Some(d) = dir {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(Applied {
        sha256: found.to_string(),
        size,
        segments,
        chunks: store.chunk,
    })
}

/// Decompresses one segment's frame against its reference.
fn decompress_segment(
    frame: &[u8],
    reference: &[u8],
    out_len: u32,
    segments: u64,
    delta: &Path,
) -> Result<Vec<u8>> {
    let zerr = |c: usize| {
        invalid(
            delta,
            format!("segment {segments}: zstd: {}", zstd_safe::get_error_name(c)),
        )
    };
    let mut dctx = zstd_safe::DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(zerr)?;
    if !reference.is_empty() {
        dctx.ref_prefix(reference).map_err(zerr)?;
    }
    let mut seg_out: Vec<u8> = Vec::with_capacity(out_len as usize);
    let n = dctx.decompress(&mut seg_out, frame).map_err(zerr)?;
    if n != out_len as usize {
        return Err(invalid(
            delta,
            format!("segment {segments} decompresses to {n} bytes, not its {out_len}"),
        ));
    }
    Ok(seg_out)
}

/// Writes through to `inner`, hashing, and refuses to grow past `limit`
/// (a delta cannot make the output larger than the promised package).
struct HashingWriter<W: Write> {
    inner: W,
    hash: sha2::Sha256,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "output would exceed the promised {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Stores chunks of the new heap as their recipes say.
struct ChunkStore {
    coding: ChunkCoding,
    /// Stored size of every chunk written (for the chunk table).
    sizes: Vec<u32>,
    chunk: u64,
}

impl ChunkStore {
    fn batch<W: Write>(
        &mut self,
        data: &[u8],
        reader: &mut DeltaReader,
        w: &mut HashingWriter<W>,
        delta: &Path,
        out: &Path,
    ) -> Result<()> {
        let chunks: Vec<&[u8]> = data.chunks(CHUNK_SIZE as usize).collect();
        let mut recipes = Vec::with_capacity(chunks.len());
        for _ in &chunks {
            recipes.push(
                reader
                    .next_recipe()?
                    .ok_or_else(|| invalid(delta, "fewer recipes than chunks"))?,
            );
        }
        let first = self.chunk;
        let coding = self.coding;
        let c = coding.compression();
        let stored: Vec<Result<Vec<u8>>> = chunks
            .par_iter()
            .zip(recipes.into_par_iter())
            .enumerate()
            .map(|(k, (chunk, recipe))| {
                let i = first + k as u64;
                match recipe {
                    Recipe::Raw => Ok(chunk.to_vec()),
                    _ if c == Compression::None => Err(invalid(
                        delta,
                        format!("chunk {i}: a compressed chunk in an uncompressed package"),
                    )),
                    Recipe::Recompress { stored_len } => {
                        match exos_hpkg::compress_chunk(coding, chunk) {
                            Some(b) if b.len() == stored_len as usize => Ok(b),
                            got => Err(invalid(
                                delta,
                                format!(
                                    "chunk {i}: {coding} gives {} bytes here, the delta expects {stored_len} (made with another compressor version?)",
                                    got.map_or(chunk.len(), |b| b.len())
                                ),
                            )),
                        }
                    }
                    Recipe::Literal(b) if b.len() < chunk.len() => Ok(b),
                    Recipe::Literal(b) => Err(invalid(
                        delta,
                        format!(
                            "chunk {i}: a {}-byte literal for a {}-byte chunk",
                            b.len(),
                            chunk.len()
                        ),
                    )),
                }
            })
            .collect();
        for s in stored {
            let s = s?;
            w.write_all(&s).map_err(io(out))?;
            self.sizes.push(s.len() as u32);
            self.chunk += 1;
        }
        Ok(())
    }
}
