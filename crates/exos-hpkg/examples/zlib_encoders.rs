//! Compares the zlib encoders a build could use on a tree's 64 KiB chunks
//! (the first 300 MiB of its files, in name order): zlib-rs at level 9
//! (what `exos build` used before 2026-12-07) and libdeflate at levels 6
//! to 12, one thread each. Prints seconds and compressed bytes.
//!
//!     cargo run --release -p exos-hpkg --example zlib_encoders -- DIR

use std::path::{Path, PathBuf};
use std::time::Instant;

use exos_hpkg::{compress_chunk, ChunkCoding};

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: zlib_encoders DIR");
        std::process::exit(2);
    };
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    for file in files(Path::new(&dir)) {
        let Ok(data) = std::fs::read(&file) else {
            continue;
        };
        for c in data.chunks(64 << 10) {
            total += c.len();
            chunks.push(c.to_vec());
        }
        if total > 300 << 20 {
            break;
        }
    }
    println!("{} chunks, {total} bytes", chunks.len());
    let codings =
        std::iter::once(ChunkCoding::ZlibRs(9)).chain((6..=12).map(ChunkCoding::Libdeflate));
    for coding in codings {
        let t = Instant::now();
        let stored: usize = chunks
            .iter()
            .map(|c| compress_chunk(coding, c).map_or(c.len(), |z| z.len()))
            .sum();
        println!(
            "{coding}: {:.2} s, {stored} bytes",
            t.elapsed().as_secs_f64()
        );
    }
}

/// Regular files under `dir`, in name order, links not followed.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for e in entries {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files(&e.path())),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
    out
}
