//! The inode numbers the kernel holds: what the FUSE handlers count as
//! they answer lookups and forgets, and what read-ahead asks before it
//! stores a file into the kernel's page cache (the kernel refuses a store
//! for an inode it does not hold).

use rustc_hash::FxHashMap;

/// Inode numbers the kernel holds, with how many lookups it has not yet
/// forgotten. Counts, not a set: a FORGET for old references handled after
/// a fresh LOOKUP on another thread must not erase the new one.
#[derive(Default)]
pub struct Known(FxHashMap<u64, u64>);

impl Known {
    /// The kernel got one more reference (a LOOKUP or READDIRPLUS entry).
    pub fn add(&mut self, ino: u64) {
        *self.0.entry(ino).or_insert(0) += 1;
    }

    /// The kernel dropped `n` references; true when it holds none now.
    pub fn forget(&mut self, ino: u64, n: u64) -> bool {
        match self.0.get_mut(&ino) {
            Some(held) if *held > n => {
                *held -= n;
                false
            }
            _ => {
                self.0.remove(&ino);
                true
            }
        }
    }

    /// The inode numbers the kernel holds.
    pub fn inodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.keys().copied()
    }

    /// Whether the kernel holds `ino` now.
    pub fn holds(&self, ino: u64) -> bool {
        self.0.contains_key(&ino)
    }
}
