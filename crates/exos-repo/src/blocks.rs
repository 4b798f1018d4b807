//! Block maps: the SHA-256 of every fixed-size block of a package file,
//! published beside it (`FILE.blocks`) and bound to the signed index by
//! size and hash. They let a client fetch any part of a package with an
//! HTTP Range request and check it before use, without the whole file.
//!
//! Layout (big-endian):
//!
//! ```text
//! 0   8  magic "exosblk1"
//! 8   4  block size (a power of two, 4 KiB to 16 MiB)
//! 12  4  reserved, 0
//! 16  8  size of the package file
//! 24  32 × ceil(size / block size)  SHA-256 of each block (the last may be short)
//! ```

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use exos_root::Sha256;

use crate::RepoError;

/// The first bytes of a block map.
pub const MAGIC: &[u8; 8] = b"exosblk1";
/// Bytes before the hashes: magic, block size, reserved, file size.
pub const HEADER_LEN: usize = 24;
/// The block size `exos repo index` publishes with: small enough that
/// opening a package (its header, then attributes and TOC at the end)
/// fetches little besides them, large enough that the map is 1/512 of the
/// package. Requests fetch runs of blocks, so small blocks cost no round
/// trips.
pub const DEFAULT_BLOCK_SIZE: u32 = 16 * 1024;
/// Smallest block size accepted.
pub const MIN_BLOCK_SIZE: u32 = 4 * 1024;
/// Largest block size accepted.
pub const MAX_BLOCK_SIZE: u32 = 16 * 1024 * 1024;

/// Where a package's block map is and what it must be, as the signed
/// index gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockMapRef {
    /// The map file's size.
    pub size: u64,
    /// The map file's SHA-256.
    pub sha256: Sha256,
}

/// The parsed block map of one package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    block_size: u32,
    file_size: u64,
    hashes: Vec<[u8; 32]>,
}

/// The exact length of a block map for a file of `file_size` bytes.
pub fn map_len(file_size: u64, block_size: u32) -> u64 {
    (HEADER_LEN as u64).saturating_add(file_size.div_ceil(block_size as u64).saturating_mul(32))
}

impl BlockMap {
    /// Hashes a file block by block.
    pub fn of_file(path: &Path, block_size: u32) -> std::io::Result<BlockMap> {
        let mut f = std::fs::File::open(path)?;
        let file_size = f.metadata()?.len();
        let mut hashes = Vec::with_capacity(file_size.div_ceil(block_size as u64) as usize);
        let mut buf = vec![0u8; block_size as usize];
        let mut left = file_size;
        while left > 0 {
            let n = left.min(block_size as u64) as usize;
            f.read_exact(&mut buf[..n])?;
            hashes.push(sha2::Sha256::digest(&buf[..n]).into());
            left -= n as u64;
        }
        Ok(BlockMap {
            block_size,
            file_size,
            hashes,
        })
    }

    /// Parses a block map; `what` names it in errors. `expected_file_size`
    /// is the package size the signed index gives: a map for another size
    /// is refused before anything is allocated from it.
    pub fn parse(bytes: &[u8], what: &str, expected_file_size: u64) -> Result<BlockMap, RepoError> {
        let bad = |rule: String| RepoError::invalid(what, rule);
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("not a block map (bad magic)".into()));
        }
        let be32 = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let block_size = be32(8);
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(bad(format!(
                "block size {block_size} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            )));
        }
        if be32(12) != 0 {
            return Err(bad("reserved field is not 0".into()));
        }
        let file_size = u64::from_be_bytes(bytes[16..24].try_into().unwrap_or([0; 8]));
        if file_size != expected_file_size {
            return Err(bad(format!(
                "describes a {file_size}-byte file, the index says {expected_file_size}"
            )));
        }
        let want = map_len(file_size, block_size);
        if bytes.len() as u64 != want {
            return Err(bad(format!(
                "{} bytes, but {want} for {} blocks",
                bytes.len(),
                file_size.div_ceil(block_size as u64)
            )));
        }
        let hashes = bytes[HEADER_LEN..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        Ok(BlockMap {
            block_size,
            file_size,
            hashes,
        })
    }

    /// The map file's bytes.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(map_len(self.file_size, self.block_size) as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.block_size.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.file_size.to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Bytes per block (the last may be shorter).
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The package's size.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Blocks in the package.
    pub fn block_count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The SHA-256 block `i` must have.
    pub fn hash(&self, i: u64) -> Option<&[u8; 32]> {
        self.hashes.get(i as usize)
    }

    /// Byte range of block `i` in the file.
    pub fn range(&self, i: u64) -> (u64, u64) {
        let start = i * self.block_size as u64;
        (start, (start + self.block_size as u64).min(self.file_size))
    }

    /// Whether `data` is block `i`.
    pub fn check(&self, i: u64, data: &[u8]) -> bool {
        let (a, b) = self.range(i);
        data.len() as u64 == b - a
            && self
                .hash(i)
                .is_some_and(|h| sha2::Sha256::digest(data).as_slice() == h)
    }

    /// The reference an index gives for this map.
    pub fn reference(&self) -> BlockMapRef {
        let bytes = self.render();
        BlockMapRef {
            size: bytes.len() as u64,
            sha256: Sha256(sha2::Sha256::digest(&bytes).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let m = BlockMap::of_file(&p, 4096).unwrap();
        assert_eq!(m.block_count(), 5);
        let bytes = m.render();
        assert_eq!(bytes.len() as u64, map_len(20_000, 4096));
        let back = BlockMap::parse(&bytes, "f.blocks", 20_000).unwrap();
        assert_eq!(back, m);
        assert!(m.check(4, &data[16384..]));
        assert!(!m.check(4, &data[16383..]));
        assert!(!m.check(3, &data[16384..]));
        let e = BlockMap::parse(&bytes, "f.blocks", 20_001).unwrap_err();
        assert!(e.to_string().contains("the index says 20001"), "{e}");
        let e = BlockMap::parse(&bytes[..bytes.len() - 1], "f.blocks", 20_000).unwrap_err();
        assert!(e.to_string().starts_with("f.blocks: "), "{e}");
        let mut odd = bytes.clone();
        odd[8..12].copy_from_slice(&3000u32.to_be_bytes());
        assert!(BlockMap::parse(&odd, "f", 20_000).is_err());
        let mut huge = bytes.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(BlockMap::parse(&huge, "f", u64::MAX).is_err());
        assert!(BlockMap::parse(b"exosblk1", "f", 0).is_err());
    }
}
