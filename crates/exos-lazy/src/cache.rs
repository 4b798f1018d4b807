//! The block cache: verified blocks of lazily mounted packages, one file
//! per block named by its SHA-256 (`DIR/ab/abcdef…`), shared by every
//! mount and every package (identical blocks are kept once), bounded in
//! bytes (least recently used blocks go first). Every block is hashed
//! again when read back, so a damaged or planted file is never served —
//! it is deleted and fetched again. Deleting the directory is always safe.
//!
//! The directory is opened by [`exos_root::cache_dir::open_cache_dir`]:
//! never through a link, only along directories of root's or the caller's,
//! tagged as a block cache; only files named like blocks (or the cache's
//! temporary files) are ever removed, and only regular files the caller
//! owns.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::Digest as _;

/// Default bound of a block cache.
pub const DEFAULT_CAPACITY: u64 = 2 << 30;

type Hash = [u8; 32];

#[derive(Default)]
struct Lru {
    used: u64,
    tick: u64,
    /// Block → (last use, size).
    entries: HashMap<Hash, (u64, u64)>,
    /// Last use → block, oldest first.
    order: BTreeMap<u64, Hash>,
}

impl Lru {
    fn touch(&mut self, h: &Hash) -> bool {
        let Some(e) = self.entries.get_mut(h) else {
            return false;
        };
        self.order.remove(&e.0);
        self.tick += 1;
        e.0 = self.tick;
        self.order.insert(self.tick, *h);
        true
    }

    fn add(&mut self, h: Hash, size: u64) {
        if self.touch(&h) {
            return;
        }
        self.tick += 1;
        self.entries.insert(h, (self.tick, size));
        self.order.insert(self.tick, h);
        self.used += size;
    }

    fn remove(&mut self, h: &Hash) {
        if let Some((t, size)) = self.entries.remove(h) {
            self.order.remove(&t);
            self.used -= size;
        }
    }
}

/// A directory of verified blocks named by their SHA-256, at most `capacity` bytes, least recently used evicted first.
pub struct BlockCache {
    dir: PathBuf,
    capacity: u64,
    lru: Mutex<Lru>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// What the cache's tag calls it.
const KIND: &str = "block cache";

/// Whether a name at the top of the cache is one of its subdirectories
/// (the first two hex digits of the blocks it holds).
fn is_subdir(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A block's bytes, never read through a link.
fn read_block(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(data)
}

/// Removes a block's file (a regular file of the caller's only).
fn remove_block(path: &Path) {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        exos_root::cache_dir::remove_entry(dir, &name.to_string_lossy());
    }
}

fn hex(h: &Hash) -> String {
    exos_root::hex::encode(h)
}

fn unhex(s: &str) -> Option<Hash> {
    exos_root::hex::decode(s)
}

impl BlockCache {
    /// Opens (creating) a cache directory of at most `capacity` bytes. It
    /// must belong to the caller and be writable by no one else: blocks
    /// are verified on every read, but a directory others can fill could
    /// still be used to evict ours.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<BlockCache> {
        let dir = &exos_root::cache_dir::open_cache_dir(dir, KIND, &is_subdir)?;
        let mut found: Vec<(i64, Hash, u64)> = Vec::new();
        for sub in fs::read_dir(dir)?.flatten() {
            let is_dir = sub.file_type().is_ok_and(|t| t.is_dir());
            let name = sub.file_name().to_string_lossy().into_owned();
            if !is_dir || !is_subdir(&name) {
                continue;
            }
            for e in fs::read_dir(sub.path())?.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                match (unhex(&file), e.metadata()) {
                    (Some(h), Ok(m)) if m.is_file() => found.push((m.mtime(), h, m.len())),
                    // Leftovers of interrupted writes; strangers stay.
                    _ if file.starts_with(".tmp-") => {
                        exos_root::cache_dir::remove_entry(&sub.path(), &file);
                    }
                    _ => {}
                }
            }
        }
        // Oldest first, so the least recently written go first.
        found.sort();
        let mut lru = Lru::default();
        for (_, h, size) in found {
            lru.add(h, size);
        }
        let cache = BlockCache {
            dir: dir.to_path_buf(),
            capacity,
            lru: Mutex::new(lru),
        };
        cache.evict();
        Ok(cache)
    }

    /// The cache directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes it holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes the cache holds.
    pub fn used(&self) -> u64 {
        self.lru.lock().unwrap().used
    }

    fn path(&self, h: &Hash) -> PathBuf {
        let name = hex(h);
        self.dir.join(&name[..2]).join(name)
    }

    /// How many blocks of `map` the cache directory `dir` holds (by file
    /// name; for reports, without opening the cache); `None` when the
    /// caller may not look (the cache is its owner's alone).
    pub fn count_present(dir: &Path, map: &exos_repo::BlockMap) -> Option<u64> {
        fs::read_dir(dir).ok()?;
        let n = (0..map.block_count())
            .filter_map(|i| map.hash(i))
            .filter(|h| {
                let name = hex(h);
                dir.join(&name[..2]).join(name).is_file()
            })
            .count() as u64;
        Some(n)
    }

    /// Whether a block with this hash is cached (not read or verified).
    pub fn contains(&self, h: &Hash) -> bool {
        self.lru.lock().unwrap().entries.contains_key(h)
    }

    /// The block with this hash, verified; `None` when absent or damaged
    /// (a damaged file is deleted).
    pub fn get(&self, h: &Hash) -> Option<Vec<u8>> {
        if !self.lru.lock().unwrap().touch(h) {
            return None;
        }
        let path = self.path(h);
        match read_block(&path) {
            Ok(data) if sha2::Sha256::digest(&data).as_slice() == h => Some(data),
            Ok(_) => {
                tracing::warn!("{}: damaged cached block removed", path.display());
                remove_block(&path);
                self.lru.lock().unwrap().remove(h);
                None
            }
            Err(_) => {
                self.lru.lock().unwrap().remove(h);
                None
            }
        }
    }

    /// Keeps a block the caller has verified. Written to a temporary name
    /// and renamed (a reader never sees half a block; no fsync: a lost
    /// block is fetched again).
    pub fn put(&self, h: &Hash, data: &[u8]) -> io::Result<()> {
        if self.contains(h) {
            self.lru.lock().unwrap().touch(h);
            return Ok(());
        }
        let path = self.path(h);
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(
            ".tmp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::write(&tmp, data)?;
        fs::rename(&tmp, &path)?;
        self.lru.lock().unwrap().add(*h, data.len() as u64);
        self.evict();
        Ok(())
    }

    /// Drops least recently used blocks until the cache fits.
    fn evict(&self) {
        let mut lru = self.lru.lock().unwrap();
        while lru.used > self.capacity {
            let Some((_, h)) = lru.order.pop_first() else {
                break;
            };
            if let Some((_, size)) = lru.entries.remove(&h) {
                lru.used -= size;
            }
            remove_block(&self.path(&h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn h(data: &[u8]) -> Hash {
        sha2::Sha256::digest(data).into()
    }

    #[test]
    fn keeps_verifies_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("blocks");
        let c = BlockCache::open(&d, 10_000).unwrap();
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 4000]).collect();
        c.put(&h(&blocks[0]), &blocks[0]).unwrap();
        c.put(&h(&blocks[1]), &blocks[1]).unwrap();
        assert_eq!(c.get(&h(&blocks[0])).as_deref(), Some(&blocks[0][..]));
        // Block 1 is now the least recently used: the third evicts it.
        c.put(&h(&blocks[2]), &blocks[2]).unwrap();
        assert!(c.contains(&h(&blocks[0])) && !c.contains(&h(&blocks[1])));
        assert!(!c.path(&h(&blocks[1])).exists());
        assert_eq!(c.used(), 8000);
        // A damaged file is never served, and is removed.
        fs::write(c.path(&h(&blocks[2])), b"planted").unwrap();
        assert_eq!(c.get(&h(&blocks[2])), None);
        assert!(!c.path(&h(&blocks[2])).exists());
        // Reopening finds what is there.
        drop(c);
        fs::create_dir_all(d.join("ab")).unwrap();
        fs::write(d.join("ab").join("stranger"), b"not a block").unwrap();
        let c = BlockCache::open(&d, 10_000).unwrap();
        assert_eq!(c.used(), 4000);
        assert!(
            d.join("ab/stranger").exists(),
            "a file not named like a block was removed"
        );
        assert_eq!(c.get(&h(&blocks[0])).as_deref(), Some(&blocks[0][..]));
        // A directory others may write is refused.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = BlockCache::open(&d, 10_000).unwrap_err();
        assert!(e.to_string().contains("writable by no one else"), "{e}");
    }
}
