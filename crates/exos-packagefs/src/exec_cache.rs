//! The persistent exec cache (`exos mount --exec-cache DIR`): programs and
//! libraries the mount has decompressed, kept as plain files so the next
//! start — after a remount or a reboot — reads them like any file on disk:
//! the daemon answers their reads from the cached file without
//! decompressing ([`ExecCacheServe::Reads`], the default), or the kernel
//! reads it itself through FUSE passthrough
//! ([`ExecCacheServe::Passthrough`]).
//!
//! * Filled with every program or library (an ELF file) a mount maps (and,
//!   with passthrough, opens), by the read-ahead thread, which decompresses
//!   it whole.
//! * Keyed by content: an entry is named by the file's content digest (the
//!   mount's own, see `mount::start_digester`) and size, so it can never be
//!   served for other bytes; each mount verifies the entries (BLAKE3 again)
//!   on a background thread when it starts and uses only those verified (or
//!   written by itself); one that does not match is removed.
//! * Bounded: when the entries pass `max_bytes`, the least recently used
//!   go (mtime is refreshed on each mount's first use).
//! * Safe to delete at any time: an entry is written under a temporary
//!   name and renamed; a missing entry is made again on the next start.
//! * The directory must belong to the daemon's user and be writable by no
//!   one else, be reached through directories of root's or that user's
//!   only, never through a link, and carry the cache's tag
//!   ([`exos_root::cache_dir`]); else the cache is not used. Only files
//!   named like entries (and the cache's own temporary files) are ever
//!   removed, and only regular files the daemon's user owns.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open, verified cache entry.
pub type Entry = File;

/// How a mount serves the programs its exec cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecCacheServe {
    /// The daemon answers reads from the cached file instead of
    /// decompressing; opens stay with the kernel, as without a cache, so a
    /// warm start costs nothing more. (`bench/startup.sh -x`.)
    #[default]
    Reads,
    /// FUSE passthrough: the kernel reads the cached file itself, with no
    /// request per page fault; but every open of every file then goes to
    /// the daemon (the kernel cannot mix the two), which warm starts pay.
    Passthrough,
}

/// Decompressed programs and libraries kept on disk by content (see the module documentation).
pub struct ExecCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Entries verified (or written) by this mount (digest → size).
    verified: Mutex<HashMap<[u8; 16], u64>>,
}

/// An entry's digest and size, from its file name.
fn parse_name(name: &str) -> Option<([u8; 16], u64)> {
    let (hex, size) = name.split_once('-')?;
    let digest = exos_root::hex::decode(hex)?;
    // Only the canonical spelling: the name an entry is written under.
    if !size.bytes().all(|b| b.is_ascii_digit()) || size.starts_with('0') && size != "0" {
        return None;
    }
    Some((digest, size.parse().ok()?))
}

fn hex(digest: &[u8; 16]) -> String {
    exos_root::hex::encode(digest)
}

/// What the cache's tag calls it.
const KIND: &str = "exec cache";

/// Whether `name` is one of the cache's own files: an entry, or a
/// temporary file of a write.
fn is_own(name: &str) -> bool {
    parse_name(name).is_some() || name.starts_with(".tmp-")
}

impl ExecCache {
    /// Verifies every entry, removing those that do not match (files not
    /// named like entries are left alone); run on a background thread at
    /// mount start.
    pub fn verify_all(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        // Most recently used first: what the last boot started is usable
        // soonest.
        let mut entries: Vec<(i64, fs::DirEntry)> = rd
            .flatten()
            .map(|e| (e.metadata().map_or(0, |m| m.mtime()), e))
            .collect();
        entries.sort_by_key(|(mtime, _)| std::cmp::Reverse(*mtime));
        for (_, e) in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((digest, size)) = parse_name(&name) else {
                continue; // not an entry: not ours to judge or remove
            };
            let ok = open_entry(&e.path())
                .and_then(|f| verify(&f, &digest, size))
                .unwrap_or(false);
            if ok {
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(digest, size);
            } else if exos_root::cache_dir::remove_entry(&self.dir, &name) {
                tracing::warn!("{}: does not match its name; removed", e.path().display());
            }
        }
    }

    /// Opens (creating) the cache directory; refuses one that someone else
    /// could write or swap, or that is not an exec cache (see
    /// [`exos_root::cache_dir::open_cache_dir`]).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<ExecCache> {
        let dir = exos_root::cache_dir::open_cache_dir(dir, KIND, &is_own)?;
        // Leftovers of interrupted writes; not another mount's write in
        // progress (several mounts share the default directory).
        let stale = |e: &fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 600))
        };
        for e in fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") && stale(&e) {
                exos_root::cache_dir::remove_entry(&dir, &name);
            }
        }
        Ok(ExecCache {
            dir,
            max_bytes,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, digest: &[u8; 16], size: u64) -> PathBuf {
        self.dir.join(format!("{}-{size}", hex(digest)))
    }

    /// The entry for these bytes, if this mount verified (or wrote) it.
    pub fn get(&self, digest: &[u8; 16], size: u64) -> Option<Entry> {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            == Some(&size);
        if !verified {
            return None;
        }
        let file = open_entry(&self.path(digest, size)).ok()?;
        // Recently used: the last to be evicted.
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        let _ = rustix::fs::futimens(&file, &now);
        Some(file)
    }

    /// Whether an entry for this content exists (verified or not).
    pub fn contains(&self, digest: &[u8; 16], size: u64) -> bool {
        self.path(digest, size).exists()
    }

    /// Stores decompressed bytes (whose digest the caller computed from the
    /// package), then keeps the cache within its size.
    pub fn put(&self, digest: &[u8; 16], bytes: &[u8]) -> io::Result<()> {
        let path = self.path(digest, bytes.len() as u64);
        if path.exists() {
            return Ok(());
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))?;
        tmp.persist(&path).map_err(|e| e.error)?;
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*digest, bytes.len() as u64);
        self.evict()
    }

    /// The entries (name, mtime, size); files not named like entries are
    /// not counted, evicted or removed.
    fn entries(&self) -> io::Result<Vec<(String, i64, u64)>> {
        Ok(fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                parse_name(&name)?;
                let m = e.metadata().ok()?;
                Some((name, m.mtime(), m.len()))
            })
            .collect())
    }

    /// Removes the least recently used entries past the size limit.
    fn evict(&self) -> io::Result<()> {
        let mut entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.2).sum();
        if total <= self.max_bytes {
            return Ok(());
        }
        entries.sort_by_key(|e| e.1);
        for (name, _, len) in entries {
            if total <= self.max_bytes {
                break;
            }
            if exos_root::cache_dir::remove_entry(&self.dir, &name) {
                total -= len;
            }
        }
        Ok(())
    }

    /// Bytes the entries take.
    pub fn bytes(&self) -> u64 {
        self.entries()
            .map(|v| v.iter().map(|e| e.2).sum())
            .unwrap_or(0)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Opens an entry for reading, never through a link.
fn open_entry(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Whether `file` holds exactly `size` bytes whose digest is `digest`.
fn verify(file: &File, digest: &[u8; 16], size: u64) -> io::Result<bool> {
    if file.metadata()?.len() != size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    let mut reader = file;
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().as_bytes()[..16] == digest[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> [u8; 16] {
        let mut d = [0u8; 16];
        d.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
        d
    }

    #[test]
    fn entries_are_verified_bounded_and_replaceable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("exec");
        let cache = ExecCache::open(&dir, 250).unwrap();
        let a = vec![1u8; 100];
        let b = vec![2u8; 100];
        let c = vec![3u8; 100];
        cache.put(&digest(&a), &a).unwrap();
        let mut got = Vec::new();
        cache
            .get(&digest(&a), 100)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, a);
        // Tampered: a later mount's verification removes it.
        cache.put(&digest(&b), &b).unwrap();
        let path = cache.path(&digest(&b), 100);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, vec![9u8; 100]).unwrap();
        fs::write(dir.join("junk"), b"x").unwrap();
        let later = ExecCache::open(&dir, 250).unwrap();
        assert!(
            later.get(&digest(&a), 100).is_none(),
            "used before verification"
        );
        later.verify_all();
        assert!(later.get(&digest(&b), 100).is_none());
        // The tampered entry goes; a file that is not an entry stays.
        assert!(!path.exists() && dir.join("junk").exists());
        assert!(later.get(&digest(&a), 100).is_some());
        // Bounded: a third entry evicts the least recently used.
        cache.put(&digest(&b), &b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        cache.put(&digest(&c), &c).unwrap();
        assert!(cache.bytes() <= 250);
        assert!(cache.contains(&digest(&c), 100));
        // A directory others can write is refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ExecCache::open(&dir, 250).is_err());
    }
}
